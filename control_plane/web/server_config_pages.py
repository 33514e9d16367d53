"""A server's startup, network and settings pages (``/servers/{server_id}/startup``,
``…/network`` and ``…/settings``).

The startup page shows what ``GET /api/v1/servers/{id}/startup`` answers this caller (the
same function builds both: hidden variables stay hidden), with inputs only for what the
caller may change; the network page lists the server's ports as ``GET …/allocations`` does,
with their notes and the main one, editable with ``allocations.update``, and, under the
port limit the host set, takes a free port (``allocations.create``) or gives one back
(``allocations.delete``); the settings page
offers renaming, reinstalling and the SFTP details, each only to whoever holds its
permission.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from control_plane.api.routing import ApiRequest, ApiRoutes
from control_plane.api.server_settings import allocations_out, startup_of
from control_plane.security.api_keys import Scope
from control_plane.services.servers import placement
from control_plane.web.render import page
from control_plane.web.server_tabs import may, visible_tabs

routes = ApiRoutes("pages")


@routes.get(
    "/servers/{server_id}/startup",
    summary="Page: a server's startup command and variables",
    permission="startup.read",
)
async def startup_page(req: ApiRequest[Any, Any]) -> web.StreamResponse:
    startup = await startup_of(req, req.server)
    may_edit = may(req, Scope.WRITE, "startup.update")
    return page(
        req.http,
        "server/startup.html",
        server=req.server,
        tabs=visible_tabs(req),
        startup=startup,
        may_edit=may_edit,
        # Changing the image goes through the same PATCH: it needs both permissions.
        may_choose_image=may_edit and may(req, Scope.WRITE, "startup.docker-image"),
    )


@routes.get(
    "/servers/{server_id}/network",
    summary="Page: a server's ports, their notes and the main one",
    permission="allocations.read",
)
async def network_page(req: ApiRequest[Any, Any]) -> web.StreamResponse:
    ports = allocations_out(await placement.allocations_of(req.db, req.server.id))
    return page(
        req.http,
        "server/network.html",
        server=req.server,
        tabs=visible_tabs(req),
        ports=ports,
        port_limit=req.server.port_limit,
        may_edit=may(req, Scope.WRITE, "allocations.update"),
        # Taking and giving back ports: only under a port limit the host set.
        may_take=req.server.port_limit > 0 and may(req, Scope.WRITE, "allocations.create"),
        may_give_back=req.server.port_limit > 0 and may(req, Scope.WRITE, "allocations.delete"),
    )


@routes.get(
    "/servers/{server_id}/settings",
    summary="Page: rename or reinstall a server, and its SFTP details",
    permission="settings.rename",
    transactional=False,
)
async def settings_page(req: ApiRequest[Any, Any]) -> web.StreamResponse:
    # SFTP logins are the owner's and the sub-users' (the API refuses administrators).
    member = req.server.owner_id == req.me.user_id or req.access.role == "subuser"
    return page(
        req.http,
        "server/settings.html",
        server=req.server,
        tabs=visible_tabs(req),
        may_reinstall=may(req, Scope.WRITE, "settings.reinstall"),
        may_sftp=member and may(req, Scope.READ, "files.sftp"),
    )
