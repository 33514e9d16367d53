"""The agent's Prometheus metrics, on a ``CollectorRegistry`` of the app's own.

Read by the control plane with a signed ``node.metrics`` command (``GET /api/v1/metrics``,
the agent's one door: no second listener to bind or firewall), and relayed to Prometheus by
the control plane's ``/metrics/nodes/{node_id}`` (docs/metrics.md). Labels take bounded
values: container operations are the node API's actions, refusal reasons a fixed set, server
ids those of this node's servers.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter as Tally
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Final

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from node_agent.servers.registry import ServerRegistry
from shared.node_api import BackupEvent, NodeEvent

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
# The node API actions that create, change or remove containers.
CONTAINER_OPERATIONS: Final = frozenset(
    {"server.create", "server.delete", "server.power", "server.update", "server.reinstall"}
)
# Refusal reasons are labels: the verifier's messages, cut to their fixed part.
_REASON_PREFIXES: Final = ("unreadable", "missing claim", "malformed claims")
_SIZE_BUCKETS: Final = tuple(float(1 << n) for n in range(20, 42, 2))


def refusal_reason(reason: str) -> str:
    """The fixed part of a verifier's refusal ("missing claim jti" → "missing claim")."""
    for prefix in _REASON_PREFIXES:
        if reason.startswith(prefix):
            return prefix
    return reason


class ServerStateCollector(Collector):
    """This node's servers by state, counted at scrape time."""

    def __init__(self, states: Callable[[], Iterable[str]]) -> None:
        """``states``: each server's state now."""
        self._states = states

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "stellar_agent_servers", "Servers on this node, by state.", labels=["state"]
        )
        states = Tally(self._states())
        for state, count in sorted(states.items()):
            family.add_metric([state], float(count))
        yield family


class AgentMetrics:
    """Every metric of one agent process."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self.operations = Counter(
            "stellar_agent_container_operations",
            "Container operations (node API actions), by operation and outcome.",
            ["operation", "outcome"],
            registry=registry,
        )
        self.operation_seconds = Histogram(
            "stellar_agent_container_operation_duration_seconds",
            "Time a container operation took to answer.",
            ["operation"],
            registry=registry,
        )
        self.throttle_events = Counter(
            "stellar_agent_console_throttle_events",
            "Times a console dropped output lines over its per-second cap.",
            registry=registry,
        )
        self.throttled_lines = Counter(
            "stellar_agent_console_throttled_lines",
            "Console output lines dropped by the per-second cap.",
            registry=registry,
        )
        self.disk_used = Gauge(
            "stellar_agent_disk_used_bytes",
            "Bytes a server's volume uses (last sample).",
            ["server"],
            registry=registry,
        )
        self.disk_limit = Gauge(
            "stellar_agent_disk_limit_bytes",
            "A server's disk quota in bytes (last sample).",
            ["server"],
            registry=registry,
        )
        self.backups = Counter(
            "stellar_agent_backups",
            "Backups and restores that ended, by operation and status.",
            ["operation", "status"],
            registry=registry,
        )
        self.backup_seconds = Histogram(
            "stellar_agent_backup_duration_seconds",
            "How long backups and restores ran.",
            ["operation"],
            buckets=(1, 5, 15, 60, 300, 900, 1800, 3600, 7200, float("inf")),
            registry=registry,
        )
        self.backup_bytes = Histogram(
            "stellar_agent_backup_size_bytes",
            "Size of the files of completed backups.",
            buckets=(*_SIZE_BUCKETS, float("inf")),
            registry=registry,
        )
        self.token_refusals = Counter(
            "stellar_agent_command_refusals",
            "Command tokens refused, by reason.",
            ["reason"],
            registry=registry,
        )

    def watch_servers(self, servers: ServerRegistry) -> ServerStateCollector:
        collector = ServerStateCollector(
            lambda: [servers.get(server_id).state for server_id, _ in servers.volumes()]
        )
        self.registry.register(collector)
        return collector

    def unwatch(self, collector: Collector) -> None:
        self.registry.unregister(collector)

    def throttled(self, dropped: int) -> None:
        """A console's throttle dropped ``dropped`` lines in a window."""
        self.throttle_events.inc()
        self.throttled_lines.inc(dropped)

    def disk(self, server_id: uuid.UUID, used: int, limit: int) -> None:
        self.disk_used.labels(str(server_id)).set(used)
        self.disk_limit.labels(str(server_id)).set(limit)

    def forget_server(self, server_id: uuid.UUID) -> None:
        for gauge in (self.disk_used, self.disk_limit):
            try:
                gauge.remove(str(server_id))
            except KeyError:
                continue

    def observe_event(self, event: NodeEvent) -> None:
        """The event bus's observer: backups that ended."""
        if isinstance(event, BackupEvent) and event.status != "running":
            self.backups.labels(event.operation, event.status).inc()
            if event.duration_seconds is not None:
                self.backup_seconds.labels(event.operation).observe(event.duration_seconds)
            if event.status == "completed" and event.size_bytes is not None:
                self.backup_bytes.observe(event.size_bytes)

    def render(self) -> bytes:
        return generate_latest(self.registry)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def operation_outcome(status: int) -> str:
    return "ok" if status < 400 else "refused" if status < 500 else "failed"


async def timed_operation(
    metrics: AgentMetrics, operation: str, handler: Handler, request: web.Request
) -> web.StreamResponse:
    """Run a container operation's handler, counted by outcome and timed."""
    started = time.perf_counter()
    outcome = "failed"
    try:
        response = await handler(request)
        outcome = operation_outcome(response.status)
        return response
    except web.HTTPException as exc:
        outcome = operation_outcome(exc.status)
        raise
    except Exception as exc:
        status = getattr(exc, "status", 500)
        outcome = operation_outcome(status if isinstance(status, int) else 500)
        raise
    finally:
        metrics.operations.labels(operation, outcome).inc()
        metrics.operation_seconds.labels(operation).observe(time.perf_counter() - started)
