"""Stopping a background task when the app shuts down, without ever hanging the shutdown.

A task is cancelled and given :data:`STOP_SECONDS` to finish; one that does not (stuck in a
call that ignores cancellation) is left behind with an error naming it and where it waits,
so the process still stops and the log says what to fix.
"""

from __future__ import annotations

import asyncio
import io
from typing import Any, Final

import structlog

STOP_SECONDS: Final = 10.0
log = structlog.get_logger("background")


async def stop(task: asyncio.Task[Any], *, within: float = STOP_SECONDS) -> None:
    """Cancel ``task`` and wait for it, at most ``within`` seconds."""
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=within)
    if done:
        if not task.cancelled() and task.exception() is not None:
            log.warning("background task ended with an error", task=task.get_name())
        return
    stack = io.StringIO()
    task.print_stack(file=stack)
    log.error(
        "background task did not stop; shutting down without it",
        task=task.get_name(),
        waiting_at=stack.getvalue()[-2000:],
    )
