"""Making and deleting a backup, for every caller that does so: the HTTP routes
(``control_plane/api/backups.py``) and scheduled tasks (``control_plane/scheduling/``).

One input model, one set of rules (``control_plane/services/backups.py``), one node call and
one audit record each. Read → the node call → write: never a transaction held while the node
answers.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable

import structlog
from aiohttp import web
from pydantic import Field, SecretStr
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.api.server_actions import COMMAND_PERMISSION
from control_plane.db.models import Backup, Node, Server
from control_plane.db.session import transaction
from control_plane.errors import ApiError, Conflict, Forbidden, NotFound
from control_plane.keys import NODES, READ_SESSIONS, SECRET_BOX, SESSIONS, SETTINGS
from control_plane.schemas.common import Input
from control_plane.security.caller import Caller
from control_plane.services import audit
from control_plane.services import backups as service
from control_plane.services.audit import AuditEvent
from control_plane.services.infrastructure import get_node
from shared.backups_api import BackupCreate as NodeBackupCreate
from shared.errors import UpstreamNoAnswer
from shared.server_spec import CONSOLE_TEXT

log = structlog.get_logger("backups")

# At the server's limit a new backup deletes the oldest: its caller must be allowed to.
DELETE_PERMISSION = "backups.delete"


class BackupCreate(Input):
    name: str | None = Field(None, min_length=1, max_length=64)
    ignore: list[str] = Field(default_factory=list, max_length=1000)
    pre_command: str | None = Field(
        None,
        min_length=1,
        max_length=256,
        pattern=CONSOLE_TEXT,
        description="typed into the running game's console first (needs console.write)",
    )
    locked: bool = Field(
        False,
        description="locked from the start: never deleted until unlocked (needs backups.delete)",
    )


async def _record(app: web.Application, caller: Caller, event: AuditEvent) -> None:
    async with transaction(app[SESSIONS]) as db:
        await audit.append(db, caller.actor, event)


async def server_node(app: web.Application, server: Server) -> Node:
    async with transaction(app[READ_SESSIONS]) as db:
        return await get_node(db, server.node_id)


async def delete_on_node(
    app: web.Application, caller: Caller, node: Node, server_id: uuid.UUID, backup_id: uuid.UUID
) -> None:
    try:
        await app[NODES].delete_backup(node, server_id, backup_id, user=str(caller.user_id))
    except NotFound:
        log.info("backup already gone from the node", backup=str(backup_id))


async def delete_all(app: web.Application, caller: Caller, server: Server, node: Node) -> None:
    """Delete every backup of a server about to be deleted from its node, locked ones too:
    its key and records go with it, so none could be fetched, restored or decrypted after.
    409 while one is being made or restored (the server is not deleted then), before any
    is deleted: deleted oldest first, they used to go until the one in use refused, and the
    server stayed without them."""
    async with transaction(app[READ_SESSIONS]) as db:
        backups = await service.backups_of(db, server.id)
    if not backups:
        return
    try:
        listed = await app[NODES].list_backups(node, server.id, user=str(caller.user_id))
    except NotFound:
        listed = None  # the node no longer has the server: nothing of it is in use
    for record in listed.backups if listed is not None else []:
        restoring = record.restore is not None and record.restore.status == "running"
        if record.status == "running" or restoring:
            raise Conflict(
                "a backup of this server is being made or restored; delete the server when "
                "it has finished"
            )
    for backup in backups:
        await delete_on_node(app, caller, node, server.id, backup.id)


async def record_failure(db: AsyncSession, backup: Backup) -> None:
    """Audit a backup that ended failed (mail alerts and webhooks subscribe to it)."""
    await audit.append(
        db,
        None,
        AuditEvent(
            "server.backup.failed",
            target_type="server",
            target_id=str(backup.server_id),
            details={"backup": str(backup.id), "reason": backup.reason or "unknown reason"},
        ),
    )


async def create(
    app: web.Application,
    caller: Caller,
    server: Server,
    body: BackupCreate,
    require: Callable[[str], None],
) -> Backup:
    """Start a backup on the server's node; at the limit the oldest unlocked one (a failed
    one first) is deleted once the node has taken the new one — never for a backup the node
    refuses (another operation of the server running, say).

    ``require(permission)`` raises unless the caller holds ``permission`` on the server: a
    backup also types its ``pre_command`` into the console, and at the server's limit it
    deletes the oldest backup, which the caller must be allowed to do by hand.
    """
    if body.pre_command is not None:
        require(COMMAND_PERMISSION)
    if body.locked:
        require(DELETE_PERMISSION)  # who may lock may unlock: the same permission as by hand
    async with transaction(app[SESSIONS]) as db:
        key = await service.server_key(db, app[SECRET_BOX], server)
    node = await server_node(app, server)
    limit = app[SETTINGS].backup_limit
    async with transaction(app[SESSIONS]) as db:
        doomed = await service.make_room(db, server.id, limit)
    if doomed:
        try:
            require(DELETE_PERMISSION)
        except Forbidden as err:
            raise Forbidden(
                f"{err.message}: this server keeps {limit} backups, and a new one would "
                "delete the oldest; ask someone who may delete backups to make room"
            ) from err
    backup_id = uuid.uuid4()
    async with transaction(app[SESSIONS]) as db:
        backup = Backup(
            id=backup_id,
            server_id=server.id,
            name=body.name or dt.datetime.now(dt.UTC).strftime("backup %Y-%m-%d %H:%M:%S"),
            ignore=body.ignore,
            locked=body.locked,
        )
        db.add(backup)
    try:
        order = NodeBackupCreate(
            backup_id=backup_id,
            key=SecretStr(key),
            ignore=body.ignore,
            pre_command=body.pre_command,
        )
        await app[NODES].create_backup(node, server.id, order, user=str(caller.user_id))
    except UpstreamNoAnswer:
        # The node may have taken it: the record stays running and the node's word decides
        # at the next look (one it does not know is failed then, api/backups.py).
        raise
    except ApiError as err:
        async with transaction(app[SESSIONS]) as db:
            failed = await db.get(Backup, backup_id)
            if failed is not None:
                failed.status, failed.reason = "failed", err.message
                await record_failure(db, failed)
        raise
    removed = await _make_room(app, caller, node, server, doomed)
    await _record(
        app,
        caller,
        AuditEvent(
            "server.backup.created",
            target_type="server",
            target_id=str(server.id),
            details={"backup": str(backup_id), "removed": [str(b) for b in removed]},
        ),
    )
    return backup


async def _make_room(
    app: web.Application, caller: Caller, node: Node, server: Server, doomed: list[Backup]
) -> list[uuid.UUID]:
    """Delete the backups chosen to make room (after the new one started); the ids removed.

    One locked meanwhile is kept; one the node will not delete now (being restored) is kept
    for the next backup to remove.
    """
    removed: list[uuid.UUID] = []
    for old in doomed:
        async with transaction(app[READ_SESSIONS]) as db:
            fresh = await db.get(Backup, old.id)
        if fresh is None or fresh.locked:
            continue
        try:
            await delete_on_node(app, caller, node, server.id, old.id)
        except ApiError as err:
            log.warning(
                "old backup not deleted to make room", backup=str(old.id), error=err.message
            )
            continue
        async with transaction(app[SESSIONS]) as db:
            # Gone already (another deletion at the same moment) is as good as deleted here;
            # that deletion audited it.
            removed += await service.remove_records(db, [old.id])
    return removed


async def delete(
    app: web.Application, caller: Caller, server: Server, backup_id: uuid.UUID
) -> None:
    """Delete an unlocked, finished backup from the node and from the records."""
    async with transaction(app[READ_SESSIONS]) as db:
        backup = await service.get_backup(db, server.id, backup_id)
    node = await server_node(app, server)
    if backup.locked:
        raise Conflict("the backup is locked; unlock it first")
    if backup.status == "running":
        raise Conflict("the backup is still being made")
    await delete_on_node(app, caller, node, server.id, backup.id)
    async with transaction(app[SESSIONS]) as db:
        deleted = await service.remove_records(db, [backup.id])
    if not deleted:
        # Another deletion at the same moment got there first: it answered and audited.
        raise NotFound("no such backup")
    await _record(
        app,
        caller,
        AuditEvent(
            "server.backup.deleted",
            target_type="server",
            target_id=str(server.id),
            details={"backup": str(backup.id)},
        ),
    )
