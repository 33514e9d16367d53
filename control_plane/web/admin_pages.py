"""The administration pages: overview, users, locations (this module) and nodes with their
allocations (``admin_node_pages.py``). Every route is ``Access.ADMIN``: someone who does not
act as an administrator gets the 403 page, as from the API. The pages read through the
services; each action on them is a call to the JSON API (``static/admin.js``), which checks
and audits it again.

They share ``templates/admin/_nav.html``: the tabs of every administration page, including
those of blueprints, servers and the audit log (``/admin/blueprints``, ``/admin/servers``,
``/admin/audit``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Final
from urllib.parse import urlencode

from aiohttp import web
from pydantic import BaseModel, Field

from control_plane.api.routing import Access, ApiRequest, ApiRoutes
from control_plane.db.models import User
from control_plane.security import sessions
from control_plane.services import api_keys as api_key_service
from control_plane.services import fleet, mfa, records, sftp
from control_plane.services import infrastructure as infra
from control_plane.services import oauth as oauth_service
from control_plane.services import passkeys as passkey_service
from control_plane.services import users as user_service
from control_plane.web.render import page

routes = ApiRoutes("pages", access=Access.ADMIN)
USERS_PER_PAGE: Final = 50


class UserPageQuery(BaseModel):
    page: int = Field(1, ge=1, le=100_000)
    search: str = Field("", max_length=254)


def node_health(status: str) -> str:
    """How a node's last poll reads: "up", "down" or "unknown" (never polled yet)."""
    return {"online": "up", "offline": "down"}.get(status, "unknown")


@routes.get("/admin", summary="Page: administration overview")
async def overview_page(req: ApiRequest[Any, Any]) -> web.StreamResponse:
    nodes = await infra.list_nodes(req.db)
    health = [node_health(node.status) for node in nodes]
    return page(
        req.http,
        "admin/overview.html",
        counts=await fleet.counts(req.db),
        states=await fleet.servers_by_state(req.db),
        nodes=[(node, node_health(node.status)) for node in nodes],
        nodes_up=health.count("up"),
        nodes_down=len(health) - health.count("up"),
    )


@routes.get("/admin/users", summary="Page: users", query=UserPageQuery)
async def users_page(req: ApiRequest[Any, UserPageQuery]) -> web.StreamResponse:
    number, search = req.query.page, req.query.search.strip()
    rows, total = await user_service.user_page(
        req.db, search=search or None, offset=(number - 1) * USERS_PER_PAGE, limit=USERS_PER_PAGE
    )
    pages = max(1, -(-total // USERS_PER_PAGE))

    def link(to: int) -> str:
        return "/admin/users?" + urlencode({"page": to, **({"search": search} if search else {})})

    return page(
        req.http,
        "admin/users.html",
        users=rows,
        with_totp=await mfa.users_with_totp(req.db, [user.id for user in rows]),
        passkeys=await passkey_service.counts(req.db, [user.id for user in rows]),
        me_id=req.me.user_id,
        total=total,
        search=search,
        page_number=number,
        pages=pages,
        previous=link(number - 1) if number > 1 else None,
        next=link(number + 1) if number < pages else None,
    )


@routes.get("/admin/users/{user_id}", summary="Page: a user's sign-in, sessions, keys and links")
async def user_page(req: ApiRequest[Any, Any]) -> web.StreamResponse:
    user = await records.get_or_404(req.db, User, req.uuid_param("user_id"), "user")
    idle = dt.timedelta(minutes=req.settings.session_idle_minutes)
    return page(
        req.http,
        "admin/user.html",
        user=user,
        mine=user.id == req.me.user_id,
        totp=bool(await mfa.users_with_totp(req.db, [user.id])),
        passkeys=(await passkey_service.counts(req.db, [user.id])).get(user.id, 0),
        sessions=await sessions.live_sessions(req.db, user.id, idle),
        keys=await api_key_service.keys_of(req.db, user.id),
        identities=await oauth_service.identities(req.db, user.id),
        ssh_keys=await sftp.keys_of(req.db, user.id),
        sftp_passwords=await sftp.passwords_of(req.db, user.id),
    )


@routes.get("/admin/locations", summary="Page: locations")
async def locations_page(req: ApiRequest[Any, Any]) -> web.StreamResponse:
    return page(
        req.http,
        "admin/locations.html",
        locations=await infra.list_locations(req.db),
        node_counts=await fleet.nodes_per_location(req.db),
    )
