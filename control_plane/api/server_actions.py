"""Actions on a running game that more than one transport offers (HTTP and the console
WebSocket): one input model, one permission node and one audit record for each, so the
transports cannot drift apart."""

from __future__ import annotations

import uuid

from control_plane.schemas.servers import CommandIn, PowerIn
from control_plane.services.audit import AuditEvent

COMMAND_PERMISSION = "console.write"


def power_permission(action: PowerIn) -> str:
    return f"control.{action.action}"


def power_audit(server_id: uuid.UUID, action: PowerIn) -> AuditEvent:
    return AuditEvent(
        f"server.power.{action.action}", target_type="server", target_id=str(server_id)
    )


def command_audit(server_id: uuid.UUID, command: CommandIn) -> AuditEvent:
    return AuditEvent(
        "server.console.command",
        target_type="server",
        target_id=str(server_id),
        details={"command": command.command[:200]},
    )
