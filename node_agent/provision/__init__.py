"""Setting a game host up for the agent: ``stellar-agent install`` and ``uninstall``.

Apart from the agent's runtime: nothing the agent runs imports this package; it uses the
runtime's settings, TLS and egress modules to write what the runtime will read.

The bundle is the TOML that ``stellar-cp node add`` prints, optionally with an
``[enrolment]`` table the installer consumes (it never reaches the agent's config)::

    [enrolment]
    control_plane = ["198.51.100.7"]   # addresses the firewall opens the agent port to
    game_ports = "25565-25665"
    tls_host = "node1.example.com"     # certificate SAN (default: listen_host)

Install is idempotent. ``--prefix`` relocates every path (files written *and* the paths
inside them), which is how the tests install into a temporary directory and then run the
installed agent. Uninstall removes the units and the games' egress table
(``inet stellar_egress``), and keeps the config, TLS key and server data unless ``--purge``.

cli.py          the ``install`` / ``uninstall`` arguments and their handlers
install.py      :func:`install`: checks, directories, TLS identity, config, pool, units, advice
uninstall.py    :func:`uninstall` and :func:`remove_egress_table`
bundle.py       :class:`Bundle`, the enrolment bundle parsed
layout.py       :class:`Layout`, every path under the prefix
systemd.py      unit names (``systemd-escape --path``), rendering and enabling the units
toml_writer.py  :func:`dump_toml`, the config written back as TOML
host.py         running host tools, writing files atomically, checking Docker and tools
errors.py       :class:`InstallError`
"""
