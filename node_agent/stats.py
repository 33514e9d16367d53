"""Resource use of a server's game, from Docker's one-shot stats, cached for a second.

A request never opens a streaming stats call: each reading is one one-shot sample, and CPU
use is the difference to the previous sample of the same run (the first reading takes two
samples a moment apart). Readings younger than ``max_age`` are answered from the cache, and
concurrent requests for one server share one reading.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from dataclasses import dataclass, field
from typing import Final

from node_agent.docker.errors import ContainerMissing
from node_agent.docker.stats import ContainerSample
from node_agent.servers.registry import ServerRegistry
from shared.server_spec import ServerState, ServerStats

CACHE_SECONDS: Final = 1.0
# Without an earlier sample of this run, CPU use is measured over this interval.
FIRST_SAMPLE_GAP_SECONDS: Final = 0.25


def _since(started_at: str) -> float:
    whole, _, fraction = started_at.rstrip("Z").partition(".")
    started = dt.datetime.fromisoformat(whole).replace(tzinfo=dt.UTC).timestamp()
    return max(0.0, time.time() - started - float(f"0.{fraction or 0}"))


def _idle(state: ServerState) -> ServerStats:
    return ServerStats(
        state=state,
        cpu_percent=0.0,
        memory_bytes=0,
        memory_limit_bytes=0,
        network_rx_bytes=0,
        network_tx_bytes=0,
        pids=0,
        uptime_seconds=None,
        sampled_at=time.time(),
    )


@dataclass
class _Reading:
    stats: ServerStats | None = None
    read_at: float = float("-inf")
    run: str | None = None
    sample: ContainerSample | None = None
    pending: asyncio.Task[ServerStats] | None = field(default=None, repr=False)


class ServerStatsReader:
    """Stats of the registry's servers, cached per server."""

    def __init__(self, registry: ServerRegistry, max_age: float = CACHE_SECONDS) -> None:
        self._registry = registry
        self._max_age = max_age
        self._readings: dict[uuid.UUID, _Reading] = {}
        # Every measurement still running, also those whose callers went away or whose
        # server was forgotten: close() cancels and awaits them.
        self._measuring: set[asyncio.Task[ServerStats]] = set()

    async def read(self, server_id: uuid.UUID) -> ServerStats:
        """The server's stats, at most ``max_age`` seconds old."""
        self._registry.get(server_id)
        reading = self._readings.setdefault(server_id, _Reading())
        if reading.stats is not None and time.monotonic() - reading.read_at < self._max_age:
            return reading.stats
        if reading.pending is None or reading.pending.done():
            reading.pending = asyncio.create_task(self._measure(server_id, reading))
            self._measuring.add(reading.pending)
            reading.pending.add_done_callback(self._measured)
        # shield: a caller that goes away must not cancel the reading others wait for.
        return await asyncio.shield(reading.pending)

    def forget(self, server_id: uuid.UUID) -> None:
        self._readings.pop(server_id, None)

    def _measured(self, task: asyncio.Task[ServerStats]) -> None:
        self._measuring.discard(task)
        # The callers that waited (if any) got the outcome through the shield; a failure
        # nobody waited for any more is not news worth a "never retrieved" report.
        if not task.cancelled():
            task.exception()

    async def close(self) -> None:
        """Cancel and await the measurements still running."""
        tasks = list(self._measuring)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _measure(self, server_id: uuid.UUID, reading: _Reading) -> ServerStats:
        server = self._registry.get(server_id)
        runtime = self._registry.runtime
        container = await runtime.find(server.container)
        if container is None or not container.running or container.started_at is None:
            stats = _idle(server.state)
        else:
            try:
                sample = await runtime.sample(server.container)
                earlier = reading.sample if reading.run == container.started_at else None
                if earlier is None:
                    earlier = sample
                    await asyncio.sleep(FIRST_SAMPLE_GAP_SECONDS)
                    sample = await runtime.sample(server.container)
            except ContainerMissing:
                stats = _idle(server.state)
            else:
                reading.sample, reading.run = sample, container.started_at
                stats = ServerStats(
                    state=server.state,
                    cpu_percent=sample.cpu_percent_since(earlier),
                    memory_bytes=sample.memory_bytes,
                    memory_limit_bytes=sample.memory_limit_bytes,
                    network_rx_bytes=sample.network_rx_bytes,
                    network_tx_bytes=sample.network_tx_bytes,
                    pids=sample.pids,
                    uptime_seconds=round(_since(container.started_at), 3),
                    sampled_at=sample.taken_at,
                )
        reading.stats, reading.read_at = stats, time.monotonic()
        return stats
