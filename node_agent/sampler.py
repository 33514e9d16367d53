"""Resource history at the source: every few seconds, each running server's CPU, memory,
network and disk, published on the node's event stream as a ``StatsEvent``.

The control plane already follows that stream (one replica per node), so it receives the
samples without polling each server; it keeps them downsampled (docs/metrics.md). Disk use is
read less often than the rest (a directory backend walks the tree to count it). Servers that
are not running send nothing: their history has a gap, which is what a graph should show.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Final

import structlog
from aiohttp import web

from node_agent.events import NodeEventBus
from node_agent.keys import METRICS, NODE_EVENTS, SERVERS, SETTINGS, STATS
from node_agent.metrics import AgentMetrics
from node_agent.servers.registry import ServerRegistry
from node_agent.stats import ServerStatsReader
from shared.errors import ApiError
from shared.node_api import StatsEvent

log = structlog.get_logger("agent.sampler")
SAMPLED_STATES: Final = frozenset({"starting", "running", "stopping"})


class ResourceSampler:
    """Samples the registry's running servers and publishes what it read."""

    def __init__(
        self,
        servers: ServerRegistry,
        stats: ServerStatsReader,
        events: NodeEventBus,
        metrics: AgentMetrics,
        *,
        disk_every: int = 6,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``disk_every``: read disk use at every n-th sample of a server."""
        self._servers = servers
        self._stats = stats
        self._events = events
        self._metrics = metrics
        self._disk_every = disk_every
        self._clock = clock
        self._ticks = 0
        self._disk: dict[uuid.UUID, tuple[int, int]] = {}

    async def sample_once(self) -> int:
        """Sample every running server once; how many samples were published."""
        read_disk = self._ticks % self._disk_every == 0
        self._ticks += 1
        published = 0
        known = set()
        for server_id, volume in self._servers.volumes():
            known.add(server_id)
            if read_disk or server_id not in self._disk:
                try:
                    usage = await volume.usage()
                except (ApiError, OSError) as err:
                    log.info("disk use unreadable", server=str(server_id), error=str(err))
                else:
                    self._disk[server_id] = (usage.used_bytes, usage.total_bytes)
                    self._metrics.disk(server_id, usage.used_bytes, usage.total_bytes)
            if self._servers.get(server_id).state not in SAMPLED_STATES:
                continue
            try:
                stats = await self._stats.read(server_id)
            except ApiError as err:
                log.info("stats unreadable", server=str(server_id), error=err.message)
                continue
            disk = self._disk.get(server_id)
            self._events.publish(
                StatsEvent(
                    server=server_id,
                    sampled_at=self._clock(),
                    cpu_percent=stats.cpu_percent,
                    memory_bytes=stats.memory_bytes,
                    network_rx_bytes=stats.network_rx_bytes,
                    network_tx_bytes=stats.network_tx_bytes,
                    disk_used_bytes=disk[0] if disk else None,
                    disk_limit_bytes=disk[1] if disk else None,
                )
            )
            published += 1
        for gone in set(self._disk) - known:
            self._disk.pop(gone)
            self._metrics.forget_server(gone)
        return published

    async def run(self, interval: float) -> None:
        while True:
            try:
                await self.sample_once()
            except Exception:
                log.exception("resource sampling failed")
            await asyncio.sleep(interval)


async def resource_sampler_ctx(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: sample while the app runs (after the server registry exists)."""
    sampler = ResourceSampler(app[SERVERS], app[STATS], app[NODE_EVENTS], app[METRICS])
    task = asyncio.create_task(
        sampler.run(app[SETTINGS].stats_sample_seconds), name="resource-sampler"
    )
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
