"""``stellar-agent uninstall``: units and the games' egress table go; data stays unless
``--purge``."""

from __future__ import annotations

import os
import shutil
import tomllib
from pathlib import Path

from node_agent.docker.network import AGENT_NETWORK
from node_agent.egress.nft import EgressError, load_script_now
from node_agent.egress.policy import render_removal, table_name
from node_agent.provision.errors import InstallError
from node_agent.provision.host import check, run, say
from node_agent.provision.layout import Layout
from node_agent.provision.systemd import AGENT_UNIT, pid1_name, systemd_running


def _mounted(path: Path) -> bool:
    try:
        lines = Path("/proc/self/mountinfo").read_text(encoding="utf-8").splitlines()
    except OSError:
        return False
    target = os.path.realpath(path)
    return any(len(f := line.split()) > 4 and f[4] == target for line in lines)


def remove_egress_table(config_file: Path) -> str:
    """Remove the egress table of the bridge ``config_file`` names; what was removed.

    The agent must be stopped first, or it loads the table again when a game starts or stops.
    """
    try:
        raw = tomllib.loads(config_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raw = {}
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise InstallError(f"cannot read {config_file} to find the agent's bridge: {err}") from err
    bridge = str(raw.get("docker_network", AGENT_NETWORK))
    try:
        table = table_name(bridge)
        load_script_now(render_removal(bridge))
    except (ValueError, EgressError) as err:
        raise InstallError(f"the games' egress table was not removed: {err}") from err
    return f"inet {table}"


def uninstall(layout: Layout, *, purge: bool) -> None:
    """Remove the units and the egress table; with ``purge`` also the config, TLS key and all
    server data."""
    if layout.is_live_system and os.geteuid() != 0:
        raise InstallError("run the uninstaller as root")
    units = [AGENT_UNIT, layout.mount_unit]
    if layout.is_live_system and systemd_running():
        run("systemctl", "disable", "--now", *units)
    elif layout.is_live_system:
        say(f"systemd is not running as PID 1 (PID 1 is {pid1_name()!r}): no unit stopped")
    for name in units:
        (layout.unit_dir / name).unlink(missing_ok=True)
    if layout.is_live_system and systemd_running():
        run("systemctl", "daemon-reload")
    say(f"removed units: {', '.join(units)}")
    if layout.is_live_system:
        # nftables is the host's, not the prefix's: a test install under --prefix keeps out.
        try:
            table = remove_egress_table(layout.config_file)
        except InstallError as err:
            say(f"{err}; remove it by hand: nft list tables, then nft delete table inet NAME")
        else:
            say(f"removed the egress table {table}: games still running can reach everything")
    if not purge:
        say(
            f"kept: {layout.config_dir} (config, TLS key: the pinned fingerprint stays valid) "
            f"and {layout.data_dir} (server data); `--purge` removes them"
        )
        return
    if _mounted(layout.pool_dir):
        check(run("umount", str(layout.pool_dir)))
        attached = run(
            "losetup", "--associated", str(layout.pool_image), "--output", "NAME", "--noheadings"
        )
        for device in attached.stdout.split():
            run("losetup", "--detach", device)
    shutil.rmtree(layout.data_dir, ignore_errors=True)
    shutil.rmtree(layout.config_dir, ignore_errors=True)
    say(f"purged: {layout.data_dir} and {layout.config_dir}")
