"""The agent's systemd units: unit names (``systemd-escape --path``), rendering, enabling.

The unit templates are ``deploy/systemd/``: ``stellar-agent.service`` names the default
paths below, which rendering replaces with the layout's; ``stellar-agent-pool.mount.in``
has ``@NAME@`` placeholders for the pool's source, mount point and options.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Final

from node_agent import firewall
from node_agent.provision.errors import InstallError
from node_agent.provision.host import check, run, say

if TYPE_CHECKING:
    from node_agent.provision.layout import Layout

AGENT_UNIT: Final = "stellar-agent.service"
# The paths the shipped agent unit names (and a node installed at ``/`` uses).
DEFAULT_AGENT_BIN: Final = "/opt/stellar-agent/bin/stellar-agent"
DEFAULT_CONFIG_FILE: Final = "/etc/stellar-agent/agent.toml"
DEFAULT_DATA_DIR: Final = "/var/lib/stellar-agent"
POOL_OPTIONS: Final = "nosuid,nodev,noatime"


def systemd_escape_path(path: Path) -> str:
    """``systemd-escape --path``: the unit name of a mount point, without the suffix."""
    text = str(path).strip("/")
    if not text:
        return "-"
    escaped = []
    for index, char in enumerate(text):
        if char == "/":
            escaped.append("-")
        elif char.isascii() and (char.isalnum() or char in ":_" or (char == "." and index)):
            escaped.append(char)
        else:
            escaped.extend(f"\\x{byte:02x}" for byte in char.encode("utf-8"))
    return "".join(escaped)


def systemd_running() -> bool:
    """Whether systemd is PID 1 here (what sd_booted() checks)."""
    return Path("/run/systemd/system").is_dir()


def pid1_name() -> str:
    """What runs as PID 1, for the message that says systemd does not."""
    try:
        return Path("/proc/1/comm").read_text(encoding="utf-8").strip()
    except OSError:
        return "unknown"


def render_units(
    layout: Layout, deploy_dir: Path, agent_bin: str, pool_device: str | None
) -> dict[str, str]:
    """The agent's unit and its pool's mount unit, with this node's paths, by file name."""
    systemd_dir = deploy_dir / "systemd"
    try:
        agent = (systemd_dir / AGENT_UNIT).read_text(encoding="utf-8")
        mount = (systemd_dir / "stellar-agent-pool.mount.in").read_text(encoding="utf-8")
    except OSError as err:
        raise InstallError(f"cannot read the unit templates in {systemd_dir}: {err}") from err
    agent = (
        agent.replace(DEFAULT_AGENT_BIN, agent_bin)
        .replace(DEFAULT_CONFIG_FILE, str(layout.config_file))
        .replace(DEFAULT_DATA_DIR, str(layout.data_dir))
    )
    if pool_device:
        source, mount_options = pool_device, POOL_OPTIONS
    else:
        source, mount_options = str(layout.pool_image), f"loop,{POOL_OPTIONS}"
    mount = firewall.render(
        mount,
        {"POOL_SOURCE": source, "POOL_DIR": str(layout.pool_dir), "POOL_OPTIONS": mount_options},
    )
    return {AGENT_UNIT: agent, layout.mount_unit: mount}


def enable_units(layout: Layout, units: list[str], restart: bool) -> None:
    """``systemctl enable --now`` the units (and restart the agent if ``restart``), when the
    layout is the live system and systemd runs; otherwise say what was skipped."""
    systemctl = ("systemctl", *units)
    if not layout.is_live_system:
        say(f"(installed under {layout.prefix}: systemctl not called)")
        return
    if not systemd_running():
        say(
            f"systemd is not running as PID 1 here (PID 1 is {pid1_name()!r}): skipped "
            f"`systemctl daemon-reload` and `systemctl enable --now {' '.join(units)}`. "
            "Run them once systemd runs."
        )
        return
    check(run("systemctl", "daemon-reload"))
    check(run(systemctl[0], "enable", "--now", *systemctl[1:]))
    if restart:
        check(run("systemctl", "restart", AGENT_UNIT))
    say(f"enabled and started: {', '.join(units)}")
