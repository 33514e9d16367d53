"""Backups of a server: made and kept (encrypted) by its node, governed here.

Status is whatever the node last reported, refreshed from the node while a backup runs, so
a backup is never shown complete when it is not, nor stuck as running after the node's
agent restarted (the agent marks such a backup failed itself).
"""

from __future__ import annotations

import base64
import datetime as dt
import uuid
from typing import Any

import structlog
from aiohttp import web
from pydantic import Field, SecretStr

from control_plane.api import backup_actions
from control_plane.api.backup_actions import BackupCreate
from control_plane.api.body_stream import rechecked
from control_plane.api.routing import ApiRequest, ApiRoutes
from control_plane.db.models import Backup, Node
from control_plane.db.session import transaction
from control_plane.errors import ApiError, Conflict, NotFound
from control_plane.keys import SECRET_BOX, SESSIONS
from control_plane.nodes.backup_stream import decrypted
from control_plane.schemas.common import Input, Output
from control_plane.services import backups as service
from shared.backups_api import BackupRecord as NodeBackupRecord
from shared.backups_api import BackupRestore as NodeBackupRestore
from shared.backups_api import RestoreOutcome

routes = ApiRoutes("backups")
log = structlog.get_logger("backups")
ORIGIN = "/api/v1/servers/{server_id}/backups"


class BackupUpdate(Input):
    locked: bool


class BackupOut(Output):
    id: uuid.UUID
    name: str
    status: str
    reason: str | None
    locked: bool
    size_bytes: int | None = Field(description="the .tar.gz a download gives")
    sha256: str | None = Field(description="hex SHA-256 of the .tar.gz a download gives")
    stored_bytes: int | None = Field(description="the encrypted copy the node keeps")
    created_at: dt.datetime
    finished_at: dt.datetime | None
    restore: RestoreOutcome | None = Field(
        None, description="its last restore, as the node reports it (one backup's GET only)"
    )


class BackupList(Output):
    data: list[BackupOut]


async def _node_and_key(req: ApiRequest[Any, Any]) -> tuple[Node, str]:
    """The server's node, and its backup key (made on first use, so a write)."""
    async with transaction(req.http.app[SESSIONS]) as db:
        key = await service.server_key(db, req.http.app[SECRET_BOX], req.server)
    return await req.server_node(), key


def _user(req: ApiRequest[Any, Any]) -> str:
    return str(req.me.user_id)


def _apply(backup: Backup, record: NodeBackupRecord) -> None:
    backup.status = record.status
    backup.reason = record.reason
    backup.size_bytes = record.size_bytes
    backup.sha256 = record.sha256
    backup.stored_bytes = record.stored_bytes
    backup.finished_at = record.finished_at


def _gone(backup: Backup) -> None:
    backup.status, backup.reason = "failed", "the node has no such backup"


def _being_started(req: ApiRequest[Any, Any], backup: Backup) -> bool:
    """Whether the node may not have been told of this backup yet: its record is written
    first, then the node is told (within the node timeout), and a failure there is recorded
    by the create itself."""
    age = dt.datetime.now(dt.UTC) - backup.created_at
    return age < dt.timedelta(seconds=2 * req.settings.node_timeout_seconds)


async def _refresh_running(req: ApiRequest[Any, Any], backups: list[Backup]) -> None:
    """Ask the node about backups still running here; it knows how they ended."""
    running = [b for b in backups if b.status == "running"]
    if not running:
        return
    node = await req.server_node()
    for backup in running:
        record: NodeBackupRecord | None
        try:
            record = await req.nodes.read_backup(node, req.server.id, backup.id, user=_user(req))
        except NotFound:
            if _being_started(req, backup):
                continue  # not on the node yet: still running, as far as anyone knows
            record = None
        except ApiError as err:
            log.info("backup status not refreshed", backup=str(backup.id), error=err.message)
            continue
        async with transaction(req.http.app[SESSIONS]) as db:
            stored = await db.get(Backup, backup.id)
            if stored is not None:
                for row in (stored, backup):
                    if record is None:
                        _gone(row)
                    else:
                        _apply(row, record)
                if stored.status == "failed":
                    await backup_actions.record_failure(db, stored)


@routes.get(
    ORIGIN,
    summary="List the server's backups",
    permission="backups.read",
    response=BackupList,
    transactional=False,
    calls_node=True,
)
async def list_backups(req: ApiRequest[Any, Any]) -> BackupList:
    async with transaction(req.http.app[SESSIONS]) as db:
        backups = await service.backups_of(db, req.server.id)
    await _refresh_running(req, backups)
    return BackupList(data=[BackupOut.model_validate(b) for b in backups])


@routes.post(
    ORIGIN,
    summary="Make a backup (in the background; oldest unlocked one makes room)",
    permission="backups.create",
    body=BackupCreate,
    response=BackupOut,
    status=202,
    transactional=False,
    calls_node=True,
    rate_limit="files",
)
async def create_backup(req: ApiRequest[BackupCreate, Any]) -> BackupOut:
    backup = await backup_actions.create(
        req.http.app, req.me, req.server, req.body, require=req.require
    )
    return BackupOut.model_validate(backup)


@routes.get(
    ORIGIN + "/{backup_id}",
    summary="One backup",
    permission="backups.read",
    response=BackupOut,
    transactional=False,
    calls_node=True,
)
async def get_backup(req: ApiRequest[Any, Any]) -> BackupOut:
    async with transaction(req.http.app[SESSIONS]) as db:
        backup = await service.get_backup(db, req.server.id, req.uuid_param("backup_id"))
    await _refresh_running(req, [backup])
    out = BackupOut.model_validate(backup)
    if backup.status == "completed":
        # How its last restore went (the panel's progress): the node keeps that, not us.
        try:
            record = await req.nodes.read_backup(
                await req.server_node(), req.server.id, backup.id, user=_user(req)
            )
            out = out.model_copy(update={"restore": record.restore})
        except ApiError as err:
            log.info("backup restore status not read", backup=str(backup.id), error=err.message)
    return out


@routes.patch(
    ORIGIN + "/{backup_id}",
    summary="Lock (never deleted) or unlock a backup",
    permission="backups.delete",
    body=BackupUpdate,
    response=BackupOut,
)
async def update_backup(req: ApiRequest[BackupUpdate, Any]) -> BackupOut:
    backup = await service.get_backup(req.db, req.server.id, req.uuid_param("backup_id"))
    backup.locked = req.body.locked
    await req.audit(
        "server.backup.locked" if backup.locked else "server.backup.unlocked",
        target_type="server",
        target_id=str(req.server.id),
        details={"backup": str(backup.id)},
    )
    return BackupOut.model_validate(backup)


@routes.delete(
    ORIGIN + "/{backup_id}",
    summary="Delete an unlocked backup",
    permission="backups.delete",
    status=204,
    transactional=False,
    calls_node=True,
)
async def delete_backup(req: ApiRequest[Any, Any]) -> None:
    await backup_actions.delete(req.http.app, req.me, req.server, req.uuid_param("backup_id"))


@routes.get(
    ORIGIN + "/{backup_id}/download",
    summary="Download a backup as .tar.gz (streamed)",
    permission="backups.download",
    transactional=False,
    calls_node=True,
)
async def download_backup(req: ApiRequest[Any, Any]) -> web.StreamResponse:
    async with transaction(req.http.app[SESSIONS]) as db:
        backup = await service.get_backup(db, req.server.id, req.uuid_param("backup_id"))
    if backup.status != "completed":
        raise Conflict("only a completed backup can be downloaded")
    node, key = await _node_and_key(req)
    async with req.nodes.download_backup(
        node, req.server.id, backup.id, user=_user(req)
    ) as upstream:
        response = web.StreamResponse(
            headers={
                "Content-Type": "application/gzip",
                "Content-Disposition": f'attachment; filename="backup-{backup.id}.tar.gz"',
            }
        )
        await response.prepare(req.http)
        # A chunk that fails to verify ends the transfer short: never a silently bad file.
        plaintext = decrypted(upstream.content, base64.b64decode(key), backup.id)
        async for part in rechecked(plaintext, req.authorized_again):
            await response.write(part)
        await response.write_eof()
    await req.audit_now(
        "server.backup.downloaded",
        target_type="server",
        target_id=str(req.server.id),
        details={"backup": str(backup.id)},
    )
    return response


@routes.post(
    ORIGIN + "/{backup_id}/restore",
    summary="Restore a backup (the server must be stopped)",
    permission="backups.restore",
    response=NodeBackupRecord,
    status=202,
    transactional=False,
    calls_node=True,
)
async def restore_backup(req: ApiRequest[Any, Any]) -> NodeBackupRecord:
    async with transaction(req.http.app[SESSIONS]) as db:
        backup = await service.get_backup(db, req.server.id, req.uuid_param("backup_id"))
    if backup.status != "completed":
        raise Conflict("only a completed backup can be restored")
    node, key = await _node_and_key(req)
    record = await req.nodes.restore_backup(
        node, req.server.id, backup.id, NodeBackupRestore(key=SecretStr(key)), user=_user(req)
    )
    await req.audit_now(
        "server.backup.restored",
        target_type="server",
        target_id=str(req.server.id),
        details={"backup": str(backup.id)},
    )
    return record
