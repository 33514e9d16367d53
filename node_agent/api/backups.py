"""Backups of a server's volume: create, list, read, download, delete, restore.

    POST   .../backups                           backups.create    BackupCreate
                                                                   -> 202 BackupRecord (running)
    GET    .../backups                           backups.list      -> BackupList
    GET    .../backups/{backup_id}               backups.read      -> BackupRecord
    GET    .../backups/{backup_id}/download      backups.download  -> the encrypted .stbk file
    DELETE .../backups/{backup_id}               backups.delete    -> 204
    POST   .../backups/{backup_id}/restore       backups.restore   BackupRestore
                                                                   -> 202 BackupRecord
                                                                   (``restore`` running)

(``...`` is ``/api/v1/servers/{server_id}``.) Create and restore run in the background; their
outcome is in the record and in ``backup`` node events. Create 409: a backup or restore of
the server runs, or the id exists. Restore 409: the server is not stopped, the backup is not
completed, or another operation runs; 400 ``backup_damaged``: the key does not open it.
List, read, download and delete work for a server deleted from the node, so that its
backups can still be fetched or cleaned up. The file format is in ``shared/backup_format.py``.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

from aiohttp import web

from node_agent.api.servers import parse_body, server_id_of
from node_agent.backups.service import BackupService
from node_agent.keys import BACKUPS, NODE_EVENTS, SERVERS, SETTINGS, STORAGE
from node_agent.security.verify import serves
from node_agent.storage.context import game_user_ids
from shared.backups_api import BackupList, BackupRecord
from shared.errors import NotFound
from shared.node_endpoints import (
    BACKUP_CREATE,
    BACKUP_DELETE,
    BACKUP_DOWNLOAD,
    BACKUP_LIST,
    BACKUP_READ,
    BACKUP_RESTORE,
)

routes = web.RouteTableDef()


def _backup_id(request: web.Request) -> uuid.UUID:
    try:
        return uuid.UUID(request.match_info["backup_id"])
    except ValueError as err:
        raise NotFound("no such backup of this server on this node") from err


def _record(record: BackupRecord, status: int = 200) -> web.Response:
    return web.json_response(text=record.model_dump_json(), status=status)


@serves(routes, BACKUP_CREATE)
async def create_backup(request: web.Request) -> web.Response:
    """Start a backup in the background (202 with the running record)."""
    order = await parse_body(request, BACKUP_CREATE)
    record = await request.app[BACKUPS].create(server_id_of(request), order)
    return _record(record, 202)


@serves(routes, BACKUP_LIST)
async def list_backups(request: web.Request) -> web.Response:
    """Every backup record of the server, oldest first."""
    records = await request.app[BACKUPS].list(server_id_of(request))
    return web.json_response(text=BackupList(backups=records).model_dump_json())


@serves(routes, BACKUP_READ)
async def read_backup(request: web.Request) -> web.Response:
    """One backup's record."""
    return _record(await request.app[BACKUPS].get(server_id_of(request), _backup_id(request)))


@serves(routes, BACKUP_DOWNLOAD)
async def download_backup(request: web.Request) -> web.FileResponse:
    """The encrypted file, streamed as it is on disk (decrypt with shared/backup_format.py)."""
    server_id, backup_id = server_id_of(request), _backup_id(request)
    path = await request.app[BACKUPS].completed_file(server_id, backup_id)
    return web.FileResponse(
        path,
        headers={
            "Content-Type": "application/octet-stream",
            "Content-Disposition": f'attachment; filename="{backup_id}.stbk"',
        },
    )


@serves(routes, BACKUP_DELETE)
async def delete_backup(request: web.Request) -> web.Response:
    """Delete the backup's file and record (409 while it runs or is being restored)."""
    await request.app[BACKUPS].delete(server_id_of(request), _backup_id(request))
    return web.Response(status=204)


@serves(routes, BACKUP_RESTORE)
async def restore_backup(request: web.Request) -> web.Response:
    """Replace the stopped server's files with the backup's, in the background (202)."""
    order = await parse_body(request, BACKUP_RESTORE)
    service = request.app[BACKUPS]
    record = await service.restore(server_id_of(request), _backup_id(request), order.key_bytes())
    return _record(record, 202)


async def backups_ctx(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: settle what a killed agent left running; at shutdown, end running work."""
    settings = app[SETTINGS]
    service = BackupService(
        data_dir=settings.data_dir,
        backend=app[STORAGE].backend,
        pool_dir=settings.pool_dir,
        servers=app[SERVERS],
        events=app[NODE_EVENTS],
        owner=game_user_ids(),
    )
    await service.recover()
    app[BACKUPS] = service
    yield
    await service.close()


def setup(app: web.Application) -> None:
    """Add the backup routes and the backup service's lifetime to the agent's app."""
    app.add_routes(routes)
    app.cleanup_ctx.append(backups_ctx)
