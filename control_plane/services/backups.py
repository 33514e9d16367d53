"""Backups: the server's key (made once, encrypted at rest), retention and locks.

The node makes, keeps, restores and deletes the encrypted files; the control plane decides
which may exist (at most ``STELLAR_BACKUP_LIMIT`` per server: the oldest unlocked one goes
first, a locked one never) and holds the key, which the node only ever sees in a command.
"""

from __future__ import annotations

import base64
import secrets
import uuid

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.models import Backup, Server, ServerBackupKey
from control_plane.errors import ApiError, Conflict, NotFound
from control_plane.security.encryption import EncryptionNotConfigured, SecretBox


class BackupsUnavailable(ApiError):
    status = 503
    code = "backups_unavailable"


async def server_key(db: AsyncSession, box: SecretBox, server: Server) -> str:
    """The server's backup key as base64, made on first use."""
    if not box.is_configured:
        raise BackupsUnavailable(
            "backups need encryption keys on the control plane (STELLAR_ENCRYPTION_KEYS)"
        )
    row = await db.scalar(select(ServerBackupKey).where(ServerBackupKey.server_id == server.id))
    try:
        if row is None:
            row = ServerBackupKey(id=uuid.uuid4(), server_id=server.id, key="")
            key = base64.b64encode(secrets.token_bytes(32)).decode()
            box.seal(row, "key", key)
            db.add(row)
            await db.flush()
            return key
        plain = box.unseal(row, "key")
    except EncryptionNotConfigured as err:
        raise BackupsUnavailable(str(err)) from err
    if plain is None:
        raise BackupsUnavailable("the server's backup key is missing")
    return plain


async def backups_of(db: AsyncSession, server_id: uuid.UUID) -> list[Backup]:
    return list(
        await db.scalars(
            select(Backup).where(Backup.server_id == server_id).order_by(Backup.created_at)
        )
    )


async def make_room(db: AsyncSession, server_id: uuid.UUID, limit: int) -> list[Backup]:
    """The backups to delete so one more fits: failed ones first (they hold nothing), then
    the oldest unlocked; 409 if all are locked."""
    existing = await backups_of(db, server_id)
    excess = len(existing) + 1 - limit
    if excess <= 0:
        return []
    unlocked = [b for b in existing if not b.locked and b.status != "running"]
    # Stable: oldest first within each kind.
    unlocked.sort(key=lambda b: b.status != "failed")
    if len(unlocked) < excess:
        raise Conflict(
            f"this server may keep {limit} backups and the others are locked or running: "
            "unlock or delete one first"
        )
    return unlocked[:excess]


async def get_backup(db: AsyncSession, server_id: uuid.UUID, backup_id: uuid.UUID) -> Backup:
    backup = await db.get(Backup, backup_id)
    if backup is None or backup.server_id != server_id:
        raise NotFound("no such backup")
    return backup


async def remove_records(db: AsyncSession, backup_ids: list[uuid.UUID]) -> list[uuid.UUID]:
    """Delete these backups' records; the ids that were still there (a deletion at the same
    moment may have removed some: the caller decides whether that matters)."""
    if not backup_ids:
        return []
    removed = await db.scalars(delete(Backup).where(Backup.id.in_(backup_ids)).returning(Backup.id))
    return list(removed)
