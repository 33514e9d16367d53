"""What every administered record shares: found by id or not found, listed in one order,
deleted only while nothing refers to it."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, TypeVar

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from control_plane.db.models.base import Base
from control_plane.errors import Conflict, NotFound

Record = TypeVar("Record", bound=Base)


async def get_or_404(
    db: AsyncSession, model: type[Record], record_id: uuid.UUID, what: str
) -> Record:
    """The record, or 404 "no such <what>"."""
    record = await db.get(model, record_id)
    if record is None:
        raise NotFound(f"no such {what}")
    return record


async def listed(
    db: AsyncSession, model: type[Record], *order_by: Any, where: Any = None
) -> list[Record]:
    """Every record of ``model`` (matching ``where``), in the given order."""
    statement = select(model).order_by(*order_by)
    if where is not None:
        statement = statement.where(where)
    return list(await db.scalars(statement))


async def delete_if_unused(
    db: AsyncSession,
    model: type[Record],
    record_id: uuid.UUID,
    what: str,
    users: Sequence[tuple[InstrumentedAttribute[Any], str]],
) -> Record:
    """Delete the record unless a row still refers to it: each of ``users`` is a foreign-key
    column and the 409 message to give while rows have this record's id there."""
    record = await get_or_404(db, model, record_id, what)
    for column, message in users:
        if await db.scalar(select(func.count()).where(column == record_id)):
            raise Conflict(message)
    await db.delete(record)
    return record
