"""Keeps a server's file operations and a restore, which rewrites the whole volume, apart.

A file operation holds the gate open while it runs (a streamed download or upload for as
long as it streams). A restore closes it: new operations are refused at once with 409, and
the restore begins only when the ones already running have finished, or gives up. Whatever
keeps files open between operations (SFTP sessions) registers with :meth:`VolumeGate.on_close`
and is ended when the gate closes, so it cannot keep writing into the volume being replaced.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from shared.errors import Conflict


class VolumeGate:
    """One per server."""

    def __init__(self) -> None:
        self._running = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._closed_for: str | None = None
        self._closers: set[Callable[[], None]] = set()

    @property
    def closed_for(self) -> str | None:
        """Why the volume is closed now (``a backup is being restored``), or None."""
        return self._closed_for

    def on_close(self, closer: Callable[[], None]) -> Callable[[], None]:
        """Call ``closer`` when the gate closes; returns the function that unregisters it."""
        self._closers.add(closer)
        return lambda: self._closers.discard(closer)

    @contextmanager
    def operation(self) -> Iterator[None]:
        """Around one file operation; 409 while the volume is closed."""
        if self._closed_for is not None:
            raise Conflict(f"the server's files are unavailable while {self._closed_for}")
        self._running += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._running -= 1
            if self._running == 0:
                self._idle.set()

    async def close(self, reason: str, wait_seconds: float) -> None:
        """Refuse new operations; wait up to ``wait_seconds`` for the running ones, else 409."""
        if self._closed_for is not None:
            raise Conflict(f"the server's files are unavailable while {self._closed_for}")
        self._closed_for = reason
        for closer in list(self._closers):
            closer()
        try:
            await asyncio.wait_for(self._idle.wait(), wait_seconds)
        except TimeoutError as err:
            self._closed_for = None
            raise Conflict("file operations on this server are still running") from err
        except BaseException:
            self._closed_for = None
            raise

    def reopen(self) -> None:
        self._closed_for = None
