"""A server's disk: its usage, and its limit changed while the game runs.

    GET    /api/v1/servers/{server_id}/disk   server.disk.read   -> ServerDisk
    PATCH  /api/v1/servers/{server_id}/disk   server.disk        DiskResize -> ServerDisk

A new limit below what the server already uses is refused (409), and so is any change on a
backend that cannot make it online (ext4, 409); the answer always says which backend holds
the limit and whether the kernel enforces it. A new limit is kept in the server's record, so
``GET /api/v1/servers/{server_id}`` shows it too.
"""

from __future__ import annotations

from aiohttp import web

from node_agent.api.servers import parse_body, server_id_of
from node_agent.keys import SERVERS, STORAGE
from node_agent.security.verify import serves
from node_agent.storage import ServerVolume
from shared.node_api import ServerDisk
from shared.node_endpoints import (
    SERVER_DISK,
    SERVER_DISK_RESIZE,
)

routes = web.RouteTableDef()


async def _answer(request: web.Request, volume: ServerVolume) -> web.Response:
    storage = request.app[STORAGE]
    usage = await volume.usage()
    disk = ServerDisk(
        used_bytes=usage.used_bytes,
        total_bytes=usage.total_bytes,
        backend=storage.backend,
        enforced=storage.enforced,
    )
    return web.json_response(text=disk.model_dump_json())


@serves(routes, SERVER_DISK)
async def read_disk(request: web.Request) -> web.Response:
    """Bytes used and the limit, as the kernel accounts them now."""
    server = request.app[SERVERS].get(server_id_of(request))
    return await _answer(request, server.volume)


@serves(routes, SERVER_DISK_RESIZE)
async def resize_disk(request: web.Request) -> web.Response:
    """Set a new disk limit; a running game sees it at once."""
    server_id = server_id_of(request)
    resize = await parse_body(request, SERVER_DISK_RESIZE)
    registry = request.app[SERVERS]
    await registry.resize_disk(server_id, resize.disk_mib)
    return await _answer(request, registry.get(server_id).volume)
