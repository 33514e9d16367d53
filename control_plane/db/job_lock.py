"""Background jobs run once across control-plane replicas.

On PostgreSQL a job holds a session-level advisory lock on a connection of its own for as
long as it runs; another replica's attempt fails at once and it tries again later. SQLite
means one machine and one control plane, so the lock is always granted.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine


def _lock_id(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


@asynccontextmanager
async def job_lock(engine: AsyncEngine, name: str) -> AsyncIterator[bool]:
    """Yield True while this process holds the job ``name``, False if another one does."""
    if engine.dialect.name != "postgresql":
        yield True
        return
    async with engine.connect() as connection:
        held = bool(
            await connection.scalar(
                text("SELECT pg_try_advisory_lock(:id)"), {"id": _lock_id(name)}
            )
        )
        await connection.commit()
        try:
            yield held
        finally:
            if held:
                await connection.execute(
                    text("SELECT pg_advisory_unlock(:id)"), {"id": _lock_id(name)}
                )
                await connection.commit()
