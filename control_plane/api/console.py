"""The console of a server as a WebSocket on the control plane, proxied to the node."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from yarl import URL

from control_plane.api.routing import ApiRequest, ApiRoutes
from control_plane.db.session import transaction
from control_plane.errors import Forbidden
from control_plane.keys import CONSOLES, NODES, SESSIONS
from control_plane.nodes.console import proxy_console
from control_plane.security.permissions import ServerAccess
from control_plane.services import infrastructure as infra
from control_plane.services import servers as service

routes = ApiRoutes("console")
MAX_MESSAGE_BYTES = 4096
MAX_SOCKETS_PER_USER = 4


def _same_origin(req: ApiRequest[Any, Any]) -> bool:
    origin = req.http.headers.get("Origin")
    public = req.settings.public_url
    if origin is None or public is None:
        return True
    expected = URL(public)
    given = URL(origin)
    return (given.scheme, given.host, given.port) == (expected.scheme, expected.host, expected.port)


@routes.get(
    "/api/v1/servers/{server_id}/console",
    summary="Console WebSocket: output, commands, power (each message checked against permissions)",
    permission="console.read",
    transactional=False,
)
async def console(req: ApiRequest[Any, Any]) -> web.StreamResponse:
    # Cross-site WebSocket hijacking: a page elsewhere must not ride the session cookie.
    if not _same_origin(req):
        raise req.deny(Forbidden("WebSocket from another origin"), target="console")
    me, server = req.me, req.server
    consoles = req.http.app[CONSOLES]
    if consoles.count(server.id, me.user_id) >= MAX_SOCKETS_PER_USER:
        raise Forbidden(f"at most {MAX_SOCKETS_PER_USER} consoles per server at once")
    factory = req.http.app[SESSIONS]
    async with transaction(factory) as db:
        node = await infra.get_node(db, server.node_id)
    nodes = req.http.app[NODES]
    path = f"/api/v1/servers/{server.id}/console"

    async def connect() -> Any:
        return await nodes.open_websocket(
            node, path, action="server.console", subject=f"server:{server.id}", user=str(me.user_id)
        )

    def renew() -> str:
        return nodes.socket_token(
            node, path, action="server.console", subject=f"server:{server.id}", user=str(me.user_id)
        )

    async def check_access() -> ServerAccess | None:
        async with transaction(factory) as db:
            found = await service.access_for(db, me, server.id)
        if found is None or (found[0].suspended and found[1].role != "admin"):
            return None
        return found[1]

    # Connect to the node before upgrading, so an unreachable node is a clear 503, not a
    # socket that opens and dies.
    first = await connect()
    browser = web.WebSocketResponse(heartbeat=30, max_msg_size=MAX_MESSAGE_BYTES)
    await browser.prepare(req.http)
    handed = {"first": first}

    async def connect_once_then_fresh() -> Any:
        if handed.get("first") is not None:
            return handed.pop("first")
        return await connect()

    await req.audit_now("server.console.opened", target_type="server", target_id=str(server.id))
    with consoles.register(server.id, me.user_id, browser):
        await proxy_console(
            browser,
            connect=connect_once_then_fresh,
            renew=renew,
            check_access=check_access,
            access=req.access,
        )
    return browser
