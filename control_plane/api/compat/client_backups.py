"""``/api/client/servers/{identifier}/backups``: Pterodactyl's backups, over our backup
routes (``control_plane/api/backups.py``): the same permission nodes, node calls, rate
limit and audit records."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from pydantic import Field

from control_plane.api import backups as native
from control_plane.api.backup_actions import DELETE_PERMISSION, BackupCreate
from control_plane.api.compat.envelope import CompatObject, collection, item, timestamp
from control_plane.api.compat.errors import BadRequest, DisplayError
from control_plane.api.compat.ids import CLIENT_IDS
from control_plane.api.routing import ApiRequest, ApiRoutes
from control_plane.errors import Conflict, InvalidRequest
from control_plane.schemas.common import Input
from control_plane.security.authorization import refusal
from control_plane.services import backups as service
from shared.errors import ErrorDetail

routes = ApiRoutes("pterodactyl client", path_ids=CLIENT_IDS)
BACKUPS = "/api/client/servers/{server_id}/backups"


class CompatBackupCreate(Input):
    name: str | None = Field(None, min_length=1, max_length=64)
    # Pterodactyl's ignore list: one pattern a line.
    ignored: str | None = Field(None, max_length=65536)
    is_locked: bool = False


def backup_attributes(backup: native.BackupOut) -> dict[str, Any]:
    return {
        "uuid": str(backup.id),
        "is_successful": backup.status == "completed",
        "is_locked": backup.locked,
        "name": backup.name,
        "ignored_files": [],
        "checksum": f"sha256:{backup.sha256}" if backup.sha256 else None,
        "bytes": backup.size_bytes or 0,
        "created_at": timestamp(backup.created_at),
        "completed_at": timestamp(backup.finished_at),
    }


@routes.get(
    BACKUPS,
    summary="Pterodactyl: the server's backups",
    permission="backups.read",
    response=CompatObject,
    transactional=False,
    calls_node=True,
)
async def list_backups(req: ApiRequest[Any, Any]) -> dict[str, Any]:
    listed = await native.list_backups(req)
    assert isinstance(listed, native.BackupList)
    answer = collection("backup", [backup_attributes(b) for b in listed.data])
    answer["meta"] = {"backup_count": len(listed.data)}
    return answer


@routes.post(
    BACKUPS,
    summary="Pterodactyl: make a backup (in the background)",
    permission="backups.create",
    body=CompatBackupCreate,
    response=CompatObject,
    transactional=False,
    calls_node=True,
    rate_limit="files",
)
async def create_backup(req: ApiRequest[Any, Any]) -> dict[str, Any]:
    body: CompatBackupCreate = req.body
    ignore = [line.strip() for line in (body.ignored or "").splitlines() if line.strip()]
    # As Pterodactyl: the lock is taken only from a caller who may delete backups, else left
    # out without an error.
    may_lock = refusal(
        req.me, replace(req.endpoint.requirement, permission=DELETE_PERMISSION), req.access
    )
    locked = body.is_locked and may_lock is None
    req.body = BackupCreate(name=body.name, ignore=ignore, locked=locked)
    made = await native.create_backup(req)
    assert isinstance(made, native.BackupOut)
    return item("backup", backup_attributes(made))


@routes.get(
    BACKUPS + "/{backup_id}",
    summary="Pterodactyl: one backup",
    permission="backups.read",
    response=CompatObject,
    transactional=False,
    calls_node=True,
)
async def get_backup(req: ApiRequest[Any, Any]) -> dict[str, Any]:
    backup = await native.get_backup(req)
    assert isinstance(backup, native.BackupOut)
    return item("backup", backup_attributes(backup))


@routes.delete(
    BACKUPS + "/{backup_id}",
    summary="Pterodactyl: delete a backup",
    permission="backups.delete",
    status=204,
    transactional=False,
    calls_node=True,
)
async def delete_backup(req: ApiRequest[Any, Any]) -> None:
    try:
        await native.delete_backup(req)
    except Conflict as err:
        # A locked (or unfinished) backup: Pterodactyl's BackupLockedException is a 400.
        raise DisplayError(err.message) from err


@routes.post(
    BACKUPS + "/{backup_id}/lock",
    summary="Pterodactyl: lock an unlocked backup, unlock a locked one",
    permission="backups.delete",
    response=CompatObject,
)
async def toggle_lock(req: ApiRequest[Any, Any]) -> dict[str, Any]:
    backup = await service.get_backup(req.db, req.server.id, req.uuid_param("backup_id"))
    req.body = native.BackupUpdate(locked=not backup.locked)
    changed = await native.update_backup(req)
    assert isinstance(changed, native.BackupOut)
    return item("backup", backup_attributes(changed))


class RestoreRequest(Input):
    # Pterodactyl's "delete every file first"; our restore always replaces the volume's
    # files with the backup's, so only ``true`` says what will happen.
    truncate: bool


@routes.post(
    BACKUPS + "/{backup_id}/restore",
    summary="Pterodactyl: restore a backup in place of every file (the server must be stopped)",
    permission="backups.restore",
    body=RestoreRequest,
    status=204,
    transactional=False,
    calls_node=True,
)
async def restore_backup(req: ApiRequest[Any, Any]) -> None:
    body: RestoreRequest = req.body
    if not body.truncate:
        raise InvalidRequest(
            "a restore here replaces every file of the server with the backup's: send "
            '"truncate": true to confirm',
            details=[ErrorDetail(loc=["body", "truncate"], msg="must be true", type="accepted")],
        )
    try:
        await native.restore_backup(req)
    except Conflict as err:
        # Running, installing or an unfinished backup: Pterodactyl's BadRequestHttpException.
        raise BadRequest(err.message) from err
