"""Raw request bodies (files) read as they arrive, with limits that suit streaming.

A whole-body deadline would cut a big upload on a slow line, so the rule is that the body
keeps arriving: every ``timeout`` seconds spent waiting for it must bring ``MIN_PROGRESS``
bytes (or its end), else 408. A client that stalls, or sends a byte now and then, cannot
hold the request, and the node connection it is relayed on, open. Time spent passing chunks
on (to a slow node) is not waiting for the client and does not count. A body that takes
minutes to arrive is no way around losing access: with ``recheck``, the caller's credential
and access are read again while it arrives and before its end is passed on.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable

from aiohttp import web

from control_plane.errors import ApiError, PayloadTooLarge, RequestTimeout

CHUNK = 256 * 1024
MIN_PROGRESS = 16 * 1024
# How often a body that is still arriving has its caller's authorization read again (as an
# SFTP session's, docs/sftp.md); a refusal raises the route's error.
RECHECK_SECONDS = 5.0
Recheck = Callable[[], Awaitable[None]]


class BodyStream:
    """One request's body, chunk by chunk, never more than ``max_bytes``.

    When the body breaks a rule while it is relayed, the consumer (the node client) fails
    with an error of its own; ``failure`` keeps the reason to answer with.
    """

    def __init__(
        self,
        request: web.Request,
        *,
        timeout: float,
        max_bytes: int,
        too_large: str,
        recheck: Recheck | None = None,
    ) -> None:
        self._request = request
        self._timeout = timeout
        self._max_bytes = max_bytes
        self._too_large = too_large
        self._recheck = recheck
        self.failure: ApiError | None = None

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            if self._recheck is None:
                async for chunk in self._read():
                    yield chunk
            else:
                async for chunk in self._rechecked(self._recheck):
                    yield chunk
        except ApiError as err:
            self.failure = err
            raise

    async def _rechecked(self, recheck: Recheck) -> AsyncIterator[bytes]:
        """The body, with the caller's authorization read again every
        :data:`RECHECK_SECONDS` and once more before its last chunk goes: each chunk is held
        until the next one has come, so whoever consumes it never has the whole body (the
        node never has the whole file) unless the caller is still allowed at its end."""
        loop = asyncio.get_running_loop()
        checked = loop.time()
        held: bytes | None = None
        async for chunk in self._read():
            if held is not None:
                yield held
            held = chunk
            if loop.time() - checked >= RECHECK_SECONDS:
                await recheck()
                checked = loop.time()
        await recheck()
        if held is not None:
            yield held

    async def read(self) -> bytes:
        """The whole body (a small one: ``max_bytes`` bounds the memory)."""
        return b"".join([chunk async for chunk in self.chunks()])

    async def _read(self) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        received = progress = 0
        waited = 0.0
        while True:
            started = loop.time()
            try:
                async with asyncio.timeout(self._timeout - waited):
                    chunk = await self._request.content.read(CHUNK)
            except TimeoutError as err:
                raise RequestTimeout(
                    f"the request body is arriving too slowly (less than "
                    f"{MIN_PROGRESS // 1024} KiB in {self._timeout:g} s)"
                ) from err
            waited += loop.time() - started
            if not chunk:
                return
            received += len(chunk)
            if received > self._max_bytes:
                raise PayloadTooLarge(self._too_large)
            progress += len(chunk)
            if progress >= MIN_PROGRESS:
                progress, waited = 0, 0.0
            yield chunk


async def rechecked(chunks: AsyncIterable[bytes], recheck: Recheck) -> AsyncIterator[bytes]:
    """A streamed answer (a download) with the caller's authorization read again every
    :data:`RECHECK_SECONDS`: a refusal raises, which ends the transfer short (the error
    middleware closes a connection whose answer has begun)."""
    loop = asyncio.get_running_loop()
    checked = loop.time()
    async for chunk in chunks:
        if loop.time() - checked >= RECHECK_SECONDS:
            await recheck()
            checked = loop.time()
        yield chunk
