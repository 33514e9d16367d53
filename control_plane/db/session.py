"""A database session per unit of work."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from control_plane.db import deletes as _deletes  # noqa: F401  (its flush check, registered)
from control_plane.db.engine import writer_turn

# Transactions open in this task (and tasks it starts while they are open).
_OPEN: ContextVar[int] = ContextVar("open_transactions", default=0)


@asynccontextmanager
async def transaction(factory: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """One session and transaction: committed on success, rolled back on error. On SQLite a
    write transaction first waits for its turn (``control_plane/db/engine.py``)."""
    opened = _OPEN.set(_OPEN.get() + 1)
    try:
        async with writer_turn(factory), factory() as session, session.begin():
            yield session
    finally:
        _OPEN.reset(opened)


def in_transaction() -> bool:
    """Whether a transaction is open here: then nothing may wait on a node (a slow node would
    hold the database for everyone; on SQLite a write transaction stalls every writer)."""
    return _OPEN.get() > 0
