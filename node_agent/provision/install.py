"""``stellar-agent install``: config, TLS identity, pool, units; idempotent.

Checks Docker and the btrfs tools, creates the config and data directories (0700), keeps an
existing TLS key (so the pinned fingerprint stays valid), writes the config in production
form (TLS on, btrfs pool), creates the pool image, installs and enables the units, and
prints the fingerprint to pin and the firewall rules to apply.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from node_agent import firewall
from node_agent.provision.bundle import Bundle
from node_agent.provision.errors import InstallError
from node_agent.provision.host import (
    check,
    check_docker,
    ensure_dir,
    require_tools,
    run,
    say,
    write_if_changed,
)
from node_agent.provision.layout import Layout
from node_agent.provision.systemd import AGENT_UNIT, enable_units, render_units
from node_agent.provision.toml_writer import dump_toml
from node_agent.settings import ConfigError, load_settings
from node_agent.sftp.hostkey import load_or_create_host_key
from node_agent.tls import TlsSetupError, generate_identity

DEFAULT_POOL_SIZE_MIB: Final = 10 * 1024
DEFAULT_SFTP_PORT: Final = 2022


@dataclass(frozen=True)
class InstallOptions:
    bundle: Bundle
    layout: Layout
    deploy_dir: Path
    agent_bin: str
    pool_size_mib: int = DEFAULT_POOL_SIZE_MIB
    pool_device: str | None = None
    environment: str = "production"
    check_docker: bool = True
    control_plane: tuple[str, ...] = ()
    game_ports: str | None = None
    ssh_port: int = 22


def agent_config(options: InstallOptions, cert_file: Path, key_file: Path) -> dict[str, Any]:
    """The bundle's settings in production form, with this node's paths."""
    layout = options.layout
    config = dict(options.bundle.settings)
    config.update(
        environment=options.environment,
        data_dir=str(layout.data_dir),
        tls_cert_file=str(cert_file),
        tls_key_file=str(key_file),
        storage_backend="btrfs",
        storage_pool_dir=str(layout.pool_dir),
        storage_pool_image=str(layout.pool_image),
    )
    # Players reach SFTP from anywhere (the firewall opens its port to everyone).
    config.setdefault("sftp_port", DEFAULT_SFTP_PORT)
    config.setdefault("sftp_listen_host", "0.0.0.0")  # noqa: S104
    # Tables last, as TOML needs them after the plain keys.
    return dict(sorted(config.items(), key=lambda item: isinstance(item[1], dict)))


def _create_pool_image(image: Path, size_mib: int) -> bool:
    if image.exists():
        return False
    descriptor = os.open(image, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.ftruncate(descriptor, size_mib * 1024 * 1024)
    finally:
        os.close(descriptor)
    result = run("mkfs.btrfs", "-q", "-L", "stellar-pool", str(image))
    if result.returncode != 0:
        image.unlink(missing_ok=True)
        check(result)
    return True


def install(options: InstallOptions) -> str:
    """Install or update the agent; return the certificate fingerprint to pin."""
    layout = options.layout
    if layout.is_live_system and os.geteuid() != 0:
        raise InstallError("run the installer as root (it writes /etc and /var/lib)")
    docker_url = str(options.bundle.settings.get("docker_url", "unix:///var/run/docker.sock"))
    if options.check_docker:
        say(f"docker: {check_docker(docker_url)}")
    require_tools(("btrfs",) if options.pool_device else ("btrfs", "mkfs.btrfs"), "btrfs-progs")

    for directory in (layout.config_dir, layout.tls_dir, layout.data_dir, layout.pool_dir):
        ensure_dir(directory, 0o700)
    host = options.bundle.tls_host or str(options.bundle.settings.get("listen_host", "127.0.0.1"))
    try:
        identity = generate_identity(host, layout.tls_dir)
    except TlsSetupError as err:
        raise InstallError(str(err)) from err

    header = "# stellar-agent config, written by `stellar-agent install` from the bundle"
    config_text = dump_toml(agent_config(options, identity.cert_file, identity.key_file), header)
    config_changed = write_if_changed(layout.config_file, config_text, 0o600)
    say(f"config: {layout.config_file} ({'written' if config_changed else 'unchanged'})")
    try:
        settings = load_settings(layout.config_file)
    except ConfigError as err:
        raise InstallError(
            "the resulting config is not usable:\n  - " + "\n  - ".join(err.problems)
        ) from err

    if options.pool_device is None and _create_pool_image(layout.pool_image, options.pool_size_mib):
        say(f"pool: created {layout.pool_image} ({options.pool_size_mib} MiB, btrfs)")
    units = render_units(layout, options.deploy_dir, options.agent_bin, options.pool_device)
    units_changed = False
    for name, text in units.items():
        units_changed |= write_if_changed(layout.unit_dir / name, text, 0o644)
    say(f"units: {', '.join(str(layout.unit_dir / name) for name in units)}")
    _copy_templates(options.deploy_dir, layout.share_dir)
    enable_units(layout, [layout.mount_unit, AGENT_UNIT], config_changed or units_changed)

    say("")
    say(f"TLS fingerprint (SHA-256, pin it for node {settings.node_id} at the control plane):")
    say(f"  {identity.fingerprint}")
    say("")
    if settings.sftp_port is not None:
        host_key = load_or_create_host_key(settings.data_dir)
        say(f"SFTP host key on port {settings.sftp_port} (users check it on first connection):")
        say(f"  {host_key.get_fingerprint('sha256')}")
        say("")
    say(_firewall_advice(options, settings.listen_port, settings.sftp_port))
    return identity.fingerprint


def _copy_templates(deploy_dir: Path, share_dir: Path) -> None:
    # So that `stellar-agent firewall` works later on the node without the source tree.
    for sub in ("firewall", "systemd"):
        source = deploy_dir / sub
        if source.resolve() != (share_dir / sub).resolve():
            shutil.copytree(source, share_dir / sub, dirs_exist_ok=True)


def _firewall_advice(options: InstallOptions, agent_port: int, sftp_port: int | None) -> str:
    addresses = list(options.control_plane) or options.bundle.control_plane
    game_ports = options.game_ports or options.bundle.game_ports or firewall.DEFAULT_GAME_PORTS
    if not addresses:
        return (
            "firewall: give the control plane's address to render the rules:\n"
            f"  stellar-agent firewall --control-plane CP_ADDRESS --agent-port {agent_port} "
            + (f"--sftp-port {sftp_port} " if sftp_port is not None else "")
            + f"--game-ports {game_ports} > /etc/nftables.d/stellar-node.nft"
        )
    policy = firewall.FirewallPolicy(
        control_plane=firewall.FirewallPolicy.parse_addresses(addresses),
        agent_port=agent_port,
        game_ports=firewall.PortRange.parse(game_ports),
        ssh_port=options.ssh_port,
        sftp_port=sftp_port,
    )
    rules = firewall.render_firewall(policy, "nft", options.deploy_dir)
    return (
        "firewall: apply these rules (save them, then `nft -f FILE`; include the file from\n"
        "/etc/nftables.conf to keep them over reboots; `--format ufw` prints ufw commands):\n"
        + rules
    )
