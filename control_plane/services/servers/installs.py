"""A server's last install: kept from the node's install event, shown to its users.

:func:`record_install` stores what the node reported (exit code, seconds, last lines,
reason) on the server and :func:`state_after` is the state it leaves the server in (set by
the caller through ``change_state``, which publishes it); :func:`install_view` is what
``GET /api/v1/servers/{id}`` shows as ``install``. Who sees what: the outcome (state, exit
code, seconds, reason — written by the agent, never by the script) to everyone who sees the
server; the last lines only to those who may read its console (``console.read``), because
they are the script's own output and may hold secrets it printed (a licence key, a token in
a download URL), exactly as the live console does.
"""

from __future__ import annotations

from typing import Any, Final

from control_plane.db.models import Server
from control_plane.schemas.servers import InstallOut, InstallState
from control_plane.security.permissions import ServerAccess
from shared.node_api import InstallEvent

# The node caps these too (node_agent/servers/install_output.py); a node is not trusted to.
MAX_LINES: Final = 100
MAX_LINE_CHARS: Final = 1024
MAX_REASON_CHARS: Final = 255
LINES_PERMISSION: Final = "console.read"


def record_install(server: Server, event: dict[str, Any]) -> InstallEvent:
    """Keep the install event on ``server``; the event as validated (the state it leaves the
    server in: :func:`state_after`).

    Raises ``pydantic.ValidationError`` (a ``ValueError``) for an event that is not one.
    """
    install = InstallEvent.model_validate(event)
    lines = [line[:MAX_LINE_CHARS] for line in (install.last_lines or [])[-MAX_LINES:]]
    server.install_exit_code = install.exit_code
    server.install_seconds = install.duration_seconds
    server.install_output = lines
    reason = install.reason
    if reason is None and not install.success:
        reason = "the install failed"  # an agent from before reasons were reported
    server.install_reason = None if reason is None else reason[:MAX_REASON_CHARS]
    return install


def state_after(install: InstallEvent) -> str:
    """The state a finished install leaves its server in."""
    return "offline" if install.success else "install_failed"


def install_recorded(server: Server, event: dict[str, Any]) -> bool:
    """Whether ``server`` already keeps exactly this install's outcome."""
    install = InstallEvent.model_validate(event)
    return (
        server.install_exit_code == install.exit_code
        and server.install_seconds == install.duration_seconds
        and server.install_output is not None
        and server.install_output[-1:] == (install.last_lines or [])[-1:]
    )


def forget_install(server: Server) -> None:
    """A new install begins: the last one's outcome no longer describes the server."""
    server.install_exit_code = None
    server.install_seconds = None
    server.install_output = None
    server.install_reason = None


def install_state(server: Server) -> InstallState:
    """``installing``, ``install_failed``, ``installed``, or ``none`` (no install recorded)."""
    if server.state == "installing":
        return "installing"
    if server.state == "install_failed":
        return "install_failed"
    recorded = (server.install_exit_code, server.install_seconds, server.install_reason)
    if recorded == (None, None, None):
        return "none"
    if server.install_reason is None and server.install_exit_code == 0:
        return "installed"
    return "install_failed"


def install_view(server: Server, access: ServerAccess) -> InstallOut:
    """The server's last install as ``access`` may see it."""
    lines = None
    if access.allows(LINES_PERMISSION) and server.install_output is not None:
        lines = list(server.install_output)
    return InstallOut(
        state=install_state(server),
        exit_code=server.install_exit_code,
        seconds=server.install_seconds,
        reason=server.install_reason,
        last_lines=lines,
    )
