"""A server's configuration files, set before each start (DESIGN.md "Game templates").

A blueprint lists files (``ServerSpec.config_files``) and, for each, keys to set; before the
game starts the agent edits them in the server's volume. A file that is a symlink, lies
behind one, is larger than 8 MiB or does not parse is left exactly as it was; the start goes
on and the game's console says why (docs/templates-config-files.md).

start.py         :func:`apply_before_start`, the one call in the start path (servers/power.py)
apply.py         each file: read, edit by its parser, write back; its outcome and notice
volume_io.py     reads and atomic writes through the confined file layer (node_agent/files/)
rules.py         a rule: key, filled value, condition (``if_value``, ``regex:`` with a time limit)
placeholders.py  ``{{server.allocations.default.port}}``... and ``$1`` groups in values
keys.py          ``listeners[0].host``, ``servers.*.address`` as segments
tree.py          rules on a tree of tables and lists, values typed like the ones they replace
structured.py    ``json``, ``yaml`` (ruamel round-trip), ``toml`` (tomlkit): comments kept
properties.py    ``properties``: Java escapes, edited line by line
ini.py           ``ini``: ``section.key``, edited line by line
xmlfile.py       ``xml``: defusedxml, element paths, ``[n]``, ``[@attr='v']``, attributes
lines.py         ``file``: a line that starts with the prefix becomes the value
text.py          UTF-8 in and out; :class:`Unparsable`
"""
