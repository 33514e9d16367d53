"""A server's backups, sub-users and activity pages (``/servers/{server_id}/…``).

Each page is declared with the permission its tab names (server_tabs.py) and hands the
template only the controls the caller may use, decided by the same function as every API
route (:func:`control_plane.web.server_tabs.may`). The browser code then talks to the JSON API,
which refuses on its own whatever a page is made to send.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from control_plane.api.routing import ApiRequest, ApiRoutes
from control_plane.api.server_settings import server_activity
from control_plane.schemas.common import PageQuery
from control_plane.security.api_keys import Scope
from control_plane.security.permissions import AREAS, DESCRIPTIONS, PERMISSIONS, expand
from control_plane.web.render import page
from control_plane.web.server_tabs import may, visible_tabs

routes = ApiRoutes("pages")


def _controls(req: ApiRequest[Any, Any], **needs: str) -> dict[str, bool]:
    """``{name: whether the caller may use the control that needs that permission}``."""
    return {name: may(req, Scope.WRITE, permission) for name, permission in needs.items()}


@routes.get(
    "/servers/{server_id}/backups",
    summary="Page: a server's backups",
    permission="backups.read",
    transactional=False,
)
async def backups_page(req: ApiRequest[Any, Any]) -> web.StreamResponse:
    return page(
        req.http,
        "server/backups.html",
        server=req.server,
        tabs=visible_tabs(req),
        can=_controls(
            req,
            create="backups.create",
            delete="backups.delete",
            restore="backups.restore",
            download="backups.download",
        ),
        # The panel keeps this many per server: a new one removes the oldest unlocked one.
        limit=req.settings.backup_limit,
    )


def grantable(req: ApiRequest[Any, Any]) -> list[dict[str, Any]]:
    """The permission boxes the caller may tick, by area: every node for the owner and
    administrators, the nodes they hold for a sub-user (the API refuses any other)."""
    held = PERMISSIONS if req.access.role != "subuser" else expand(req.access.permissions)
    areas = []
    for area, label in AREAS.items():
        nodes = sorted(p for p in held if p.split(".", 1)[0] == area)
        if nodes:
            boxes = [{"node": p, "description": DESCRIPTIONS[p]} for p in nodes]
            areas.append({"area": area, "label": label, "boxes": boxes})
    return areas


@routes.get(
    "/servers/{server_id}/users",
    summary="Page: a server's sub-users",
    permission="users.read",
    transactional=False,
)
async def users_page(req: ApiRequest[Any, Any]) -> web.StreamResponse:
    can = _controls(req, create="users.create", update="users.update", delete="users.delete")
    return page(
        req.http,
        "server/users.html",
        server=req.server,
        tabs=visible_tabs(req),
        can=can,
        areas=grantable(req) if can["create"] or can["update"] else [],
        descriptions=DESCRIPTIONS,
    )


@routes.get(
    "/servers/{server_id}/activity",
    summary="Page: what was done to a server",
    permission="activity.read",
    query=PageQuery,
)
async def activity_page(req: ApiRequest[Any, PageQuery]) -> web.StreamResponse:
    found = await server_activity(req.db, req.server.id, req.query)
    pages = max(1, -(-found.meta.total // found.meta.per_page))
    return page(
        req.http,
        "server/activity.html",
        server=req.server,
        tabs=visible_tabs(req),
        entries=found.data,
        total=found.meta.total,
        page_number=found.meta.page,
        pages=pages,
        per_page=found.meta.per_page,
    )
