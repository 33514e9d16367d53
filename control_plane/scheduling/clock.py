"""The scheduler's time: what it reads as now, and how it waits (tests inject their own)."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Protocol


class SchedulerClock(Protocol):
    def now(self) -> dt.datetime:
        """The current time, aware, UTC."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's time."""
        ...


class SystemClock:
    """Real time."""

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class ManualClock:
    """Time that moves only when told to; ``sleep`` returns once ``advance`` passes its end."""

    def __init__(self, start: dt.datetime) -> None:
        self._now = start
        self._moved = asyncio.Condition()
        self._sleepers = 0

    def now(self) -> dt.datetime:
        return self._now

    async def set(self, moment: dt.datetime) -> None:
        async with self._moved:
            self._now = moment
            self._moved.notify_all()

    async def advance(self, seconds: float) -> None:
        await self.set(self._now + dt.timedelta(seconds=seconds))

    async def sleep(self, seconds: float) -> None:
        end = self._now + dt.timedelta(seconds=seconds)
        async with self._moved:
            self._sleepers += 1
            self._moved.notify_all()
            try:
                await self._moved.wait_for(lambda: self._now >= end)
            finally:
                self._sleepers -= 1

    async def sleeping(self, count: int = 1) -> None:
        """Return once ``count`` callers wait in ``sleep`` (then ``advance`` wakes them)."""
        async with self._moved:
            await self._moved.wait_for(lambda: self._sleepers >= count)
