"""The node's SFTP access table, as the control plane pushes it (docs/sftp.md).

    PUT /api/v1/sftp/access     sftp.access     SftpAccess -> 204 (409: older than the node's)

The table replaces the previous one whole; open SFTP sessions it no longer allows are
closed before the answer is sent. A table older than the one held is refused (409), one of
the same version is taken as already applied (204); the version held is in the node's
system answer, so the control plane sees a node that is behind.
"""

from __future__ import annotations

import structlog
from aiohttp import web

from node_agent.api.servers import parse_body
from node_agent.facts import publish
from node_agent.keys import FACTS, SFTP_ACCESS
from node_agent.security.verify import serves
from node_agent.sftp.access import StaleTable
from node_agent.sftp.listener import sftp_listener_ctx
from shared.errors import Conflict
from shared.node_endpoints import NODE_SFTP_ACCESS

log = structlog.get_logger("agent.sftp")

routes = web.RouteTableDef()


@serves(routes, NODE_SFTP_ACCESS)
async def replace_access(request: web.Request) -> web.Response:
    """Store and apply a new access table."""
    access = await parse_body(request, NODE_SFTP_ACCESS)
    try:
        applied = request.app[SFTP_ACCESS].replace(access)
    except StaleTable as err:
        log.warning("sftp access table refused: older", offered=err.offered, held=err.held)
        raise Conflict(str(err)) from err
    if applied:
        publish(request.app, request.app[FACTS])  # the system answer shows the new version
    return web.Response(status=204)


def setup(app: web.Application) -> None:
    """The route, and the listener (after the file service, which it uses)."""
    app.add_routes(routes)
    app.cleanup_ctx.append(sftp_listener_ctx)
