"""The tabs of a server's pages (console, files, backups, …): each names the permission
node its page needs, and a tab is shown only when the caller holds it, decided by the same
function every route uses (:func:`control_plane.security.authorization.refusal`).

A page that adds a tab adds one line to ``TABS``; its route declares the same permission, so
the tab bar and the route cannot disagree about who may open it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from control_plane.api.routing import ApiRequest
from control_plane.security.api_keys import Scope
from control_plane.security.authorization import Requirement, refusal


@dataclass(frozen=True)
class Tab:
    label: str
    # The path under ``/servers/{server_id}``: "" for the console.
    suffix: str
    permission: str


TABS: Final = (
    Tab("Console", "", "console.read"),
    Tab("Files", "/files", "files.read"),
    Tab("Backups", "/backups", "backups.read"),
    Tab("Users", "/users", "users.read"),
    Tab("Startup", "/startup", "startup.read"),
    Tab("Network", "/network", "allocations.read"),
    Tab("Settings", "/settings", "settings.rename"),
    Tab("Activity", "/activity", "activity.read"),
)


def may(req: ApiRequest[Any, Any], scope: Scope, permission: str) -> bool:
    """Whether the caller may use a control that needs ``permission`` on this server."""
    return refusal(req.me, Requirement(scope=scope, permission=permission), req.access) is None


def visible_tabs(req: ApiRequest[Any, Any]) -> list[dict[str, str]]:
    """The tabs this caller may open on ``req.server``, as the nav template draws them."""
    base = f"/servers/{req.server.id}"
    return [
        {"label": tab.label, "href": base + tab.suffix}
        for tab in TABS
        if may(req, Scope.READ, tab.permission)
    ]
