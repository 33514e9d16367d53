"""The node's SFTP access table, as the control plane pushes it (docs/sftp.md).

    PUT /api/v1/sftp/access     sftp.access     SftpAccess -> 204

The table replaces the previous one whole; open SFTP sessions it no longer allows are
closed before the answer is sent.
"""

from __future__ import annotations

from aiohttp import web

from node_agent.api.servers import parse_body
from node_agent.keys import SFTP_ACCESS
from node_agent.security.verify import serves
from node_agent.sftp.listener import sftp_listener_ctx
from shared.node_endpoints import NODE_SFTP_ACCESS

routes = web.RouteTableDef()


@serves(routes, NODE_SFTP_ACCESS)
async def replace_access(request: web.Request) -> web.Response:
    """Store and apply a new access table."""
    access = await parse_body(request, NODE_SFTP_ACCESS)
    request.app[SFTP_ACCESS].replace(access)
    return web.Response(status=204)


def setup(app: web.Application) -> None:
    """The route, and the listener (after the file service, which it uses)."""
    app.add_routes(routes)
    app.cleanup_ctx.append(sftp_listener_ctx)
