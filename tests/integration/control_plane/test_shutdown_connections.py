"""The app's shutdown closes every database connection, even one held by work that outlived
the task that started it (shielded units of work finish after their caller is cancelled)."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

from sqlalchemy import event, select

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
