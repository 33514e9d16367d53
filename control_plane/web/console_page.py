"""A server's console page: ``/servers/{server_id}``, for whoever holds ``console.read`` on it.

The page shows the console (xterm.js over the console WebSocket), and, only where the caller
may use them, the command input (``console.write``), each power button (``control.<action>``)
and the resource graphs (``stats.read``). Which of them is decided here, by the same function
as every API route and socket event (:func:`control_plane.security.authorization.refusal`);
the browser code only draws what the page holds, and the API and the socket refuse on their
own whatever it sends.
"""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web

from control_plane.api.routing import ApiRequest, ApiRoutes
from control_plane.security.api_keys import Scope
from control_plane.web.render import page
from control_plane.web.server_tabs import may, visible_tabs

routes = ApiRoutes("pages")
POWER_ACTIONS: Final = ("start", "stop", "restart", "kill")


@routes.get(
    "/servers/{server_id}",
    summary="Page: a server's console",
    permission="console.read",
    transactional=False,
)
async def console_page(req: ApiRequest[Any, Any]) -> web.StreamResponse:
    server = req.server
    return page(
        req.http,
        "console.html",
        style_nonce=True,
        server=server,
        tabs=visible_tabs(req),
        power=[action for action in POWER_ACTIONS if may(req, Scope.WRITE, f"control.{action}")],
        may_type=may(req, Scope.WRITE, "console.write"),
        may_see_stats=may(req, Scope.READ, "stats.read"),
    )
