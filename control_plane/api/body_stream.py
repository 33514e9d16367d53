"""Raw request bodies (files) read as they arrive, never more than a limit."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from control_plane.errors import ApiError, PayloadTooLarge

CHUNK = 256 * 1024


class BodyStream:
    """One request's body, chunk by chunk, never more than ``max_bytes``.

    When the body breaks a rule while it is relayed, the consumer (the node client) fails
    with an error of its own; ``failure`` keeps the reason to answer with.
    """

    def __init__(self, request: web.Request, *, max_bytes: int, too_large: str) -> None:
        self._request = request
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

    async def _read(self) -> AsyncIterator[bytes]:
        received = 0
        async for chunk in self._request.content.iter_chunked(CHUNK):
            received += len(chunk)
            if received > self._max_bytes:
                raise PayloadTooLarge(self._too_large)
            yield chunk
