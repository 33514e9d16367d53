"""Send bytes no HTTP client would send, and read back what the server answered."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from multidict import CIMultiDict


@dataclass
class RawResponse:
    status: int
    headers: CIMultiDict[str]
    body: bytes
    raw: bytes

    def json(self) -> Any:
        return json.loads(self.body)


async def exchange(host: str, port: int, request: bytes, timeout: float = 10) -> RawResponse:
    """Write ``request`` on a new connection and read one response (the server closes)."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(request)
        await writer.drain()
        return await read_response(reader, timeout)
    finally:
        writer.close()
        # The server may have reset the connection after answering; that is its right.
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def read_response(reader: asyncio.StreamReader, timeout: float = 10) -> RawResponse:
    """One response (with a ``Content-Length``) from ``reader``."""
    async with asyncio.timeout(timeout):
        head = await reader.readuntil(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers: CIMultiDict[str] = CIMultiDict()
        for line in lines:
            if line:
                name, _, value = line.partition(":")
                headers.add(name.strip(), value.strip())
        length = int(headers.get("Content-Length", "0"))
        body = await reader.readexactly(length)
    return RawResponse(int(status_line.split(" ")[1]), headers, body, head + body)


def request_bytes(
    method: str, target: str | bytes, headers: Mapping[str, str | bytes], body: bytes = b""
) -> bytes:
    """One HTTP/1.1 request, bytes as given (no encoding or checks)."""
    target_bytes = target.encode("latin-1") if isinstance(target, str) else target
    lines = [method.encode("ascii") + b" " + target_bytes + b" HTTP/1.1"]
    for name, value in {"Host": "localhost", **headers}.items():
        value_bytes = value.encode("latin-1") if isinstance(value, str) else value
        lines.append(name.encode("ascii") + b": " + value_bytes)
    if body:
        lines.append(b"Content-Length: " + str(len(body)).encode("ascii"))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body
