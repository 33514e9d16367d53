"""The app's shutdown closes every database connection, even one held by work that outlived
the task that started it (shielded units of work finish after their caller is cancelled)."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import create_async_engine

from control_plane.db.engine import async_url, connections_returned
from control_plane.db.session import transaction
from control_plane.keys import ENGINE, SESSIONS
from tests.support.panel import Panel


async def test_the_shutdown_waits_for_a_connection_still_in_use_then_closes_it(
    panel: Panel,
) -> None:
    app = panel.server.app
    order: list[str] = []
    holding, release = asyncio.Event(), asyncio.Event()

    def disposed(*_: Any) -> None:
        order.append("engine disposed")

    event.listen(app[ENGINE].sync_engine, "engine_disposed", disposed)

    async def outliving() -> None:
        # Like a shielded store or admission whose socket (or stream) was already closed.
        async with transaction(app[SESSIONS]) as db:
            await db.execute(select(1))
            holding.set()
            await release.wait()
        order.append("work done")

    work = asyncio.create_task(outliving())
    await holding.wait()
    closing = asyncio.create_task(panel.server.close())
    # A bound, not a synchronisation: without the wait the whole shutdown is over at once.
    done, _ = await asyncio.wait({closing}, timeout=2)
    assert not done, "the app shut down while a unit of work still held a connection"
    release.set()
    await asyncio.gather(closing, work)
    assert order == ["work done", "engine disposed"]
    # A connection dropped unclosed would warn here (ResourceWarning, an error under pytest).
    gc.collect()


async def test_the_wait_ends_when_the_last_connection_back_was_one_beyond_the_pool(
    database_url: str,
) -> None:
    """A connection beyond the pool's size is closed on its way back and counted back only
    after that close, with no event of its own: the wait for it used to sleep until its
    10 s bound (a replica under load then took 10 s to stop: bench/fleet.py)."""
    engine = create_async_engine(async_url(database_url), pool_size=1, max_overflow=1)
    try:
        kept, beyond = await engine.connect(), await engine.connect()
        await kept.close()
        waiting = asyncio.create_task(connections_returned(engine))
        await asyncio.sleep(0)
        await beyond.close()
        async with asyncio.timeout(2):
            await waiting
    finally:
        await engine.dispose()
