"""A background task that ignores its cancellation cannot hang the shutdown: it is left behind
with an error naming it and where it waits."""

from __future__ import annotations

import asyncio
import contextlib
import time

from structlog.testing import capture_logs

from control_plane import background


async def test_a_task_that_stops_is_awaited() -> None:
    task = asyncio.create_task(asyncio.sleep(60), name="sleeper")
    await background.stop(task, within=5)
    assert task.cancelled()


async def test_a_task_that_ignores_cancellation_is_left_behind_and_named() -> None:
    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(60)

    task = asyncio.create_task(stubborn(), name="stubborn-job")
    await asyncio.sleep(0)
    started = time.monotonic()
    with capture_logs() as logs:
        await background.stop(task, within=0.2)
    assert time.monotonic() - started < 2
    [entry] = [e for e in logs if e["log_level"] == "error"]
    assert entry["task"] == "stubborn-job"
    assert "stubborn" in entry["waiting_at"]
    release.set()
    task.cancel()
    await asyncio.wait({task}, timeout=5)
