"""A server's disk: its usage, and its limit changed while the game runs.

    GET    /api/v1/servers/{server_id}/disk   server.disk.read   -> ServerDisk
    PATCH  /api/v1/servers/{server_id}/disk   server.disk        DiskResize -> ServerDisk

A new limit below what the server already uses is refused (409), and so is any change on a
backend that cannot make it online (ext4, 409); the answer always says which backend holds
the limit and whether the kernel enforces it.
"""

from __future__ import annotations

import asyncio
import uuid

from aiohttp import web
from pydantic import ValidationError

from node_agent.keys import STORAGE
from node_agent.security.verify import command
from node_agent.storage import ServerVolume
from shared.errors import InvalidRequest, NotFound
from shared.node_api import DiskResize, ServerDisk

routes = web.RouteTableDef()
DISK_PATH = "/api/v1/servers/{server_id}/disk"


async def _volume(request: web.Request) -> ServerVolume:
    try:
        server_id = uuid.UUID(request.match_info["server_id"])
    except ValueError as err:
        raise NotFound("no such server on this node") from err
    volume = request.app[STORAGE].volume(server_id)
    if not await asyncio.to_thread(volume.path.is_dir):
        raise NotFound("no such server on this node")
    return volume


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


@routes.get(DISK_PATH)
@command("server.disk.read", subject="server")
async def read_disk(request: web.Request) -> web.Response:
    """Bytes used and the limit, as the kernel accounts them now."""
    return await _answer(request, await _volume(request))


@routes.patch(DISK_PATH)
@command("server.disk", subject="server")
async def resize_disk(request: web.Request) -> web.Response:
    """Set a new disk limit; a running game sees it at once."""
    try:
        resize = DiskResize.model_validate_json(await request.read())
    except ValidationError as err:
        raise InvalidRequest.from_validation(err) from err
    volume = await _volume(request)
    await volume.resize(resize.disk_mib)
    return await _answer(request, volume)
