"""A user's API keys as their owner and administrators see them (never a secret: only its
hash is stored) and their revocation."""

from __future__ import annotations

import uuid

from sqlalchemy import delete, select
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.models import ApiKey


async def keys_of(db: AsyncSession, user_id: uuid.UUID) -> list[ApiKey]:
    rows = await db.scalars(
        select(ApiKey).where(ApiKey.user_id == user_id).order_by(ApiKey.created_at)
    )
    return list(rows)


async def key_of(db: AsyncSession, user_id: uuid.UUID, key_id: uuid.UUID) -> ApiKey | None:
    """The user's key with this id; None for anyone else's."""
    key = await db.get(ApiKey, key_id)
    return key if key is not None and key.user_id == user_id else None


async def revoke(db: AsyncSession, key: ApiKey) -> bool:
    """Delete the key; False when a revocation at the same moment deleted it first (the
    caller answers 404 and audits nothing)."""
    result = await db.execute(
        delete(ApiKey).where(ApiKey.id == key.id).execution_options(synchronize_session=False)
    )
    return isinstance(result, CursorResult) and result.rowcount == 1
