"""Hold requests at a lock until several are waiting there: the deterministic way to send
two requests "at the same moment" (both have read before either writes)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TypeAlias

import asyncpg

# What a holding block yields: a wait for ``n`` requests to be held up.
Held: TypeAlias = AbstractAsyncContextManager[Callable[[int], Awaitable[None]]]


@asynccontextmanager
async def requests_held(
    database_url: str, lock: str, *args: object
) -> AsyncIterator[Callable[[int], Awaitable[None]]]:
    """Hold what the requests must wait for until the block ends — PostgreSQL: the rows the
    ``lock`` statement locks; SQLite: the write lock, which every writer waits for. Yields a
    wait for ``n`` requests to be held up."""
    if database_url.startswith("sqlite"):
        holder = sqlite3.connect(database_url.removeprefix("sqlite:///"), isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")

        async def settle(_count: int) -> None:
            await asyncio.sleep(0.5)  # (each waits for its writer's turn; nothing to count)

        try:
            yield settle
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        return
    holder_pg = await asyncpg.connect(database_url)
    watcher = await asyncpg.connect(database_url)
    held = holder_pg.transaction()
    await held.start()
    await holder_pg.execute(lock, *args)

    async def waiting(count: int) -> None:
        for _ in range(200):
            now_waiting = await watcher.fetchval(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            if now_waiting >= count:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"fewer than {count} requests are waiting")

    try:
        yield waiting
    finally:
        await held.rollback()
        await holder_pg.close()
        await watcher.close()
