"""A small TCP load balancer for the fleet benchmark: round-robin per connection.

Run as ``python -m bench.fleet_balancer PORT BACKEND_PORT...`` (all on 127.0.0.1). Each
accepted connection goes to the next backend in turn; a backend that refuses the connection
(a dead replica) is skipped for that connection, as a health-checking balancer would after
its first failed check. Bytes are copied both ways until either side closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import signal
import sys
from typing import Final

BUFFER_BYTES: Final = 64 * 1024


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(BUFFER_BYTES):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(ConnectionError, OSError):
            writer.close()


class RoundRobin:
    """Hands each client connection to the next backend that accepts it."""

    def __init__(self, backends: list[int]) -> None:
        self._backends = backends
        self._turn = itertools.cycle(range(len(backends)))

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        for _ in range(len(self._backends)):
            port = self._backends[next(self._turn)]
            try:
                return await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                continue
        return None

    async def handle(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        upstream = await self._connect()
        if upstream is None:
            client_writer.close()
            return
        up_reader, up_writer = upstream
        await asyncio.gather(_pipe(client_reader, up_writer), _pipe(up_reader, client_writer))


async def serve(port: int, backends: list[int]) -> None:
    balancer = RoundRobin(backends)
    server = await asyncio.start_server(balancer.handle, "127.0.0.1", port, backlog=1024)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with server:
        await stop.wait()


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print("usage: python -m bench.fleet_balancer PORT BACKEND_PORT...", file=sys.stderr)
        return 2
    asyncio.run(serve(int(argv[0]), [int(p) for p in argv[1:]]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
