"""Raw request bodies (files) read as they arrive, with limits that suit streaming.

A whole-body deadline would cut a big upload on a slow line, so the rule is that the body
keeps arriving: every ``timeout`` seconds spent waiting for it must bring ``MIN_PROGRESS``
bytes (or its end), else 408. A client that stalls, or sends a byte now and then, cannot
hold the request, and the node connection it is relayed on, open. Time spent passing chunks
on (to a slow node) is not waiting for the client and does not count.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import web

from control_plane.errors import ApiError, PayloadTooLarge, RequestTimeout

CHUNK = 256 * 1024
MIN_PROGRESS = 16 * 1024


class BodyStream:
    """One request's body, chunk by chunk, never more than ``max_bytes``.

    When the body breaks a rule while it is relayed, the consumer (the node client) fails
    with an error of its own; ``failure`` keeps the reason to answer with.
    """

    def __init__(
        self, request: web.Request, *, timeout: float, max_bytes: int, too_large: str
    ) -> None:
        self._request = request
        self._timeout = timeout
        self._max_bytes = max_bytes
        self._too_large = too_large
        self.failure: ApiError | None = None

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._read():
                yield chunk
        except ApiError as err:
            self.failure = err
            raise

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
