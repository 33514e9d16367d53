"""The event types a webhook subscribes to, and the body each delivery carries.

Domain events (control_plane/services/domain_events.py) map to one public type each: a
specific one (``server.crashed``…) when the webhook subscribes to it, else ``audit`` (every
audited action) when it subscribes to that. One event makes at most one delivery per webhook.

Bodies follow the Standard Webhooks envelope ``{"type", "timestamp", "data"}``; a webhook of
format ``discord`` gets a Discord message with one embed instead (mentions disabled, so a
server named ``@everyone`` pings nobody).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final, Literal, get_args

from control_plane.services.domain_events import SERVER_STATE, DomainEvent

EventType = Literal[
    "server.state",
    "server.crashed",
    "server.power",
    "server.backup.completed",
    "server.backup.failed",
    "server.install.finished",
    "user.signed_in",
    "audit",
]
EVENT_TYPES: Final[tuple[str, ...]] = get_args(EventType)
TEST_EVENT: Final = "webhook.test"
AUDIT: Final = "audit"
# Event types whose deliveries are activity-log entries with their actor (who, from where):
# on a server, what ``activity.read`` shows.
ACTIVITY_EVENTS: Final = frozenset({AUDIT, "server.power"})
WebhookFormat = Literal["standard", "discord"]

# Audited actions with a type of their own (power actions are matched by prefix).
_SPECIFIC: Final[Mapping[str, str]] = {
    SERVER_STATE: "server.state",
    "server.crashed": "server.crashed",
    "server.backup.completed": "server.backup.completed",
    "server.backup.failed": "server.backup.failed",
    "server.install.finished": "server.install.finished",
    "user.login.succeeded": "user.signed_in",
}
_POWER_PREFIX: Final = "server.power."


def specific_type(action: str) -> str | None:
    """The public type of a domain action, if it has one of its own."""
    if action.startswith(_POWER_PREFIX):
        return "server.power"
    return _SPECIFIC.get(action)


def delivery_type(action: str, subscribed: list[str]) -> str | None:
    """What a webhook subscribed to ``subscribed`` receives for ``action``, if anything."""
    specific = specific_type(action)
    if specific is not None and specific in subscribed:
        return specific
    # Server state changes are not audited (there are too many), so never ``audit``.
    if action != SERVER_STATE and AUDIT in subscribed:
        return AUDIT
    return None


def envelope(
    event_type: str, event: DomainEvent, server: Mapping[str, str] | None
) -> dict[str, Any]:
    """The Standard Webhooks payload of ``event``."""
    data: dict[str, Any] = {
        "action": event.action,
        "target_type": event.target_type,
        "target_id": event.target_id,
        "details": dict(event.details),
    }
    if server is not None:
        data["server"] = dict(server)
    if event.actor_id is not None or event.actor_email is not None:
        data["actor"] = {
            "id": str(event.actor_id) if event.actor_id else None,
            "email": event.actor_email,
            "ip": event.ip,
        }
    return {"type": event_type, "timestamp": event.at.isoformat(), "data": data}


def render(form: str, payload: dict[str, Any]) -> str:
    """The body sent to a webhook of format ``form``."""
    content = discord_message(payload) if form == "discord" else payload
    return json.dumps(content, default=str, ensure_ascii=False, separators=(",", ":"))


_RED, _GREEN, _BLUE = 0xE74C3C, 0x2ECC71, 0x3498DB
_TITLES: Final[Mapping[str, str]] = {
    "server.state": "Server state changed",
    "server.crashed": "Server crashed",
    "server.power": "Power action",
    "server.backup.completed": "Backup completed",
    "server.backup.failed": "Backup failed",
    "server.install.finished": "Install finished",
    "user.signed_in": "New sign-in",
    AUDIT: "Panel activity",
    TEST_EVENT: "Test event",
}


def _clip(text: object, limit: int) -> str:
    value = str(text)
    return value if len(value) <= limit else value[: limit - 1] + "…"


def discord_message(payload: dict[str, Any]) -> dict[str, Any]:
    """A Discord webhook message (one embed) for a Standard Webhooks payload."""
    event_type = str(payload["type"])
    data: dict[str, Any] = payload.get("data", {})
    details: dict[str, Any] = data.get("details") or {}
    failed = event_type in ("server.crashed", "server.backup.failed") or (
        event_type == "server.install.finished" and not details.get("success", True)
    )
    fields: list[dict[str, Any]] = []
    if data.get("server"):
        fields.append({"name": "Server", "value": _clip(data["server"].get("name"), 1024)})
    if data.get("action"):
        fields.append({"name": "Action", "value": _clip(data["action"], 1024), "inline": True})
    if "state" in details:
        fields.append({"name": "State", "value": _clip(details["state"], 1024), "inline": True})
    actor = data.get("actor") or {}
    if actor.get("email"):
        fields.append({"name": "By", "value": _clip(actor["email"], 1024), "inline": True})
    if data.get("message"):
        fields.append({"name": "Message", "value": _clip(data["message"], 1024)})
    embed = {
        "title": _clip(_TITLES.get(event_type, event_type), 256),
        "color": _RED if failed else (_GREEN if event_type != AUDIT else _BLUE),
        "timestamp": payload.get("timestamp"),
        "fields": fields[:25],
        "footer": {"text": f"StellarStack · {event_type}"},
    }
    return {"username": "StellarStack", "embeds": [embed], "allowed_mentions": {"parse": []}}
