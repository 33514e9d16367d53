"""A game's console, recent output and resource use.

    POST /api/v1/servers/{server_id}/command       server.command  ConsoleCommand -> 204
    GET  /api/v1/servers/{server_id}/logs?lines=N  server.logs     -> ConsoleLines
    GET  /api/v1/servers/{server_id}/stats         server.stats    -> ServerStats
    GET  /api/v1/servers/{server_id}/console       server.console  WebSocket (console.session)

A command is refused with 409 while the server installs and 400 when the game is not
running. The console socket is refused with 429 when the server already has its fill of
open consoles; its token is one minted for ``GET`` of the path with an empty body.
"""

from __future__ import annotations

from typing import Final

from aiohttp import web

from node_agent.api.servers import parse_body, server_id_of
from node_agent.console.session import ConsoleSession, open_socket
from node_agent.keys import CLAIMS, OPEN_SOCKETS, SERVERS, SETTINGS, STATS, VERIFIER
from node_agent.security.socket_lease import SocketLease
from node_agent.security.verify import serves
from shared.errors import InvalidRequest
from shared.node_endpoints import (
    SERVER_COMMAND,
    SERVER_CONSOLE,
    SERVER_LOGS,
    SERVER_STATS,
)
from shared.server_spec import MAX_LOG_LINES, ConsoleLines

routes = web.RouteTableDef()
DEFAULT_LOG_LINES: Final = 100


@serves(routes, SERVER_COMMAND)
async def send_command(request: web.Request) -> web.Response:
    """Type one line on the game's console."""
    server = request.app[SERVERS].get(server_id_of(request))
    body = await parse_body(request, SERVER_COMMAND)
    await server.send_command(body.command)
    return web.Response(status=204)


@serves(routes, SERVER_LOGS)
async def recent_logs(request: web.Request) -> web.Response:
    """The most recent console lines (``lines``, 1..1000, default 100)."""
    server = request.app[SERVERS].get(server_id_of(request))
    text = request.query.get("lines", str(DEFAULT_LOG_LINES))
    if not text.isdigit() or not 1 <= int(text) <= MAX_LOG_LINES:
        raise InvalidRequest(f"lines must be a whole number from 1 to {MAX_LOG_LINES}")
    lines = ConsoleLines(lines=server.console.recent(int(text)))
    return web.json_response(text=lines.model_dump_json())


@serves(routes, SERVER_STATS)
async def server_stats(request: web.Request) -> web.Response:
    """CPU, memory, network, PIDs and uptime of the game now (cached for a second)."""
    stats = await request.app[STATS].read(server_id_of(request))
    return web.json_response(text=stats.model_dump_json())


@serves(routes, SERVER_CONSOLE)
async def console_socket(request: web.Request) -> web.StreamResponse:
    """The console WebSocket: recent lines, then live output; commands and power inbound."""
    server_id = server_id_of(request)
    server = request.app[SERVERS].get(server_id)
    limits = request.app[SETTINGS].console
    viewer = server.console.add_viewer()
    # Taken with the viewer added and no await between: no line is missed or sent twice.
    recent = server.console.recent()
    request.app[OPEN_SOCKETS].add(viewer)
    try:
        ws = open_socket(limits)
        await ws.prepare(request)
        lease = SocketLease(
            request.app[VERIFIER], request[CLAIMS], request.raw_path, limits.token_grace_seconds
        )
        stats = request.app[STATS]
        session = ConsoleSession(server, viewer, lease, limits, lambda: stats.read(server_id))
        await session.run(ws, recent)
    finally:
        server.console.remove_viewer(viewer)
        request.app[OPEN_SOCKETS].discard(viewer)
    return ws
