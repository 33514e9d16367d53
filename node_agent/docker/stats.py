"""One reading of a container's resource counters (``GET /containers/{id}/stats``, one-shot)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import aiodocker
import aiohttp

from node_agent.docker.errors import ContainerMissing, DockerUnavailable


@dataclass(frozen=True)
class ContainerSample:
    """Cumulative counters at one moment; CPU use is the difference between two samples."""

    taken_at: float
    cpu_total_ns: int
    system_cpu_ns: int
    online_cpus: int
    memory_bytes: int
    memory_limit_bytes: int
    network_rx_bytes: int
    network_tx_bytes: int
    pids: int

    @classmethod
    def from_stats(cls, data: dict[str, Any], taken_at: float) -> ContainerSample:
        cpu = data.get("cpu_stats") or {}
        usage = cpu.get("cpu_usage") or {}
        memory = data.get("memory_stats") or {}
        details = memory.get("stats") or {}
        # As ``docker stats`` does: page cache is not the game's memory (v1: cache, v2: file).
        cache = details.get("total_inactive_file", details.get("inactive_file", 0))
        networks = data.get("networks") or {}
        online = cpu.get("online_cpus") or len(usage.get("percpu_usage") or ()) or 1
        return cls(
            taken_at=taken_at,
            cpu_total_ns=int(usage.get("total_usage") or 0),
            system_cpu_ns=int(cpu.get("system_cpu_usage") or 0),
            online_cpus=int(online),
            memory_bytes=max(0, int(memory.get("usage") or 0) - int(cache or 0)),
            memory_limit_bytes=int(memory.get("limit") or 0),
            network_rx_bytes=sum(int(n.get("rx_bytes") or 0) for n in networks.values()),
            network_tx_bytes=sum(int(n.get("tx_bytes") or 0) for n in networks.values()),
            pids=int((data.get("pids_stats") or {}).get("current") or 0),
        )

    def cpu_percent_since(self, earlier: ContainerSample | None) -> float:
        """CPU use between ``earlier`` and this sample, 100 per busy core."""
        if earlier is None:
            return 0.0
        cpu_delta = self.cpu_total_ns - earlier.cpu_total_ns
        system_delta = self.system_cpu_ns - earlier.system_cpu_ns
        if cpu_delta <= 0 or system_delta <= 0:
            return 0.0
        return round(cpu_delta / system_delta * self.online_cpus * 100.0, 2)


async def sample_container(docker: aiodocker.Docker, name: str) -> ContainerSample:
    """Read the counters once, without dockerd's one-second wait for a second sample."""
    try:
        # aiodocker's stats() has no ``one-shot`` parameter; the query is the same request.
        data: Any = await docker._query_json(
            f"containers/{name}/stats", params={"stream": "0", "one-shot": "1"}
        )
    except aiodocker.DockerError as err:
        if err.status == 404:
            raise ContainerMissing(f"stats {name}: no such container") from err
        raise DockerUnavailable(f"stats {name}: {err.message}") from err
    except (aiohttp.ClientError, OSError) as err:
        raise DockerUnavailable(f"stats {name}: Docker engine not reachable") from err
    if isinstance(data, list):
        data = data[0] if data else {}
    return ContainerSample.from_stats(data, time.time())
