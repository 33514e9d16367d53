"""Decrypt a backup while it streams from the node to the browser, in flat memory.

``shared.backup_format.decrypt_chunks`` reads a file object; here the file object is fed
from the node's HTTP stream through a bounded queue, and the decryption runs in a thread,
so neither side ever holds more than a few chunks.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import uuid
from collections.abc import AsyncIterator
from typing import Final

from aiohttp import StreamReader

from shared.backup_format import decrypt_chunks

_DEPTH: Final = 4
_END: Final = b""


class _QueueFile:
    """A blocking ``read`` over byte chunks put on a queue (``b""`` ends it)."""

    def __init__(self, source: queue.Queue[bytes]) -> None:
        self._source = source
        self._pending = b""
        self._ended = False

    def read(self, size: int = -1) -> bytes:
        while not self._ended and (size < 0 or len(self._pending) < size):
            chunk = self._source.get()
            if chunk == _END:
                self._ended = True
            self._pending += chunk
        if size < 0:
            size = len(self._pending)
        out, self._pending = self._pending[:size], self._pending[size:]
        return out


async def decrypted(
    upstream: StreamReader, key: bytes, backup_id: uuid.UUID, *, chunk: int = 256 * 1024
) -> AsyncIterator[bytes]:
    """The backup's plaintext (a tar.gz); raises BackupIntegrityError if it does not verify."""
    loop = asyncio.get_running_loop()
    ciphertext: queue.Queue[bytes] = queue.Queue(maxsize=_DEPTH)
    plaintext: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue(maxsize=_DEPTH)

    def decrypt() -> None:
        try:
            for part in decrypt_chunks(_QueueFile(ciphertext), key, backup_id):  # type: ignore[arg-type]
                asyncio.run_coroutine_threadsafe(plaintext.put(part), loop).result()
            outcome: bytes | BaseException | None = None
        except BaseException as err:  # handed to the event loop, raised there
            outcome = err
        asyncio.run_coroutine_threadsafe(plaintext.put(outcome), loop).result()

    async def feed() -> None:
        async for part in upstream.iter_chunked(chunk):
            await asyncio.to_thread(ciphertext.put, part)
        await asyncio.to_thread(ciphertext.put, _END)

    feeder = asyncio.create_task(feed())
    worker = asyncio.create_task(asyncio.to_thread(decrypt))
    try:
        while True:
            item = await plaintext.get()
            if item is None:
                break
            if isinstance(item, BaseException):
                raise item
            yield item
        await feeder
    finally:
        feeder.cancel()
        # Unblock the thread if the browser went away mid-download, then let it finish.
        while not worker.done():
            with contextlib.suppress(queue.Full):
                ciphertext.put_nowait(_END)
            with contextlib.suppress(asyncio.QueueEmpty):
                plaintext.get_nowait()
            await asyncio.sleep(0.01)
        await asyncio.gather(feeder, worker, return_exceptions=True)
