"""The control plane's Prometheus metrics, on a ``CollectorRegistry`` of the app's own.

One :class:`ControlPlaneMetrics` per application (``app[METRICS]``), never a module global:
two apps in one process (tests, replicas in a harness) never mix their numbers. Every label
takes values from a bounded set: route templates (never raw paths), methods, status codes,
rate-limit presets, node names, node API actions.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.ext.asyncio import AsyncEngine

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Where a request matched no route: one label value for every unknown path.
UNMATCHED_ROUTE = "unmatched"


class DatabasePoolCollector(Collector):
    """The engine's connection pool, read at scrape time (nothing to keep up to date)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    def collect(self) -> Iterator[Metric]:
        pool = self._engine.sync_engine.pool
        family = GaugeMetricFamily(
            "stellar_db_pool_connections",
            "Database connections of this replica's pool, by state.",
            labels=["state"],
        )
        # SQLite's pools may lack the queue pool's counters; report what exists.
        checked_out = getattr(pool, "checkedout", None)
        checked_in = getattr(pool, "checkedin", None)
        if callable(checked_out):
            family.add_metric(["in_use"], float(checked_out()))
        if callable(checked_in):
            family.add_metric(["idle"], float(checked_in()))
        yield family
        sized = GaugeMetricFamily(
            "stellar_db_pool_size", "Configured size of the connection pool.", labels=[]
        )
        size = getattr(pool, "size", None)
        if callable(size):
            sized.add_metric([], float(size()))
        yield sized


class ListCacheStats(Protocol):
    hits: int
    misses: int

    @property
    def size_bytes(self) -> int: ...


class ListCacheCollector(Collector):
    """The kept server lists (``control_plane.api.list_cache``), read at scrape time: how many
    list requests were answered from them, how many read anew, and what they hold."""

    def __init__(self, cache: ListCacheStats) -> None:
        self._cache = cache

    def collect(self) -> Iterator[Metric]:
        lookups = CounterMetricFamily(
            "stellar_list_cache_lookups",
            "Server-list pages asked of this replica: answered from its kept pages (hit) or"
            " read from the database (miss).",
            labels=["outcome"],
        )
        lookups.add_metric(["hit"], float(self._cache.hits))
        lookups.add_metric(["miss"], float(self._cache.misses))
        yield lookups
        kept = GaugeMetricFamily(
            "stellar_list_cache_bytes", "Bytes of server-list pages this replica keeps."
        )
        kept.add_metric([], float(self._cache.size_bytes))
        yield kept


class ControlPlaneMetrics:
    """Every metric of one control-plane process."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self._request_children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self.requests = Counter(
            "stellar_http_requests",
            "HTTP requests answered, by route template, method and status.",
            ["route", "method", "status"],
            registry=registry,
        )
        self.request_seconds = Histogram(
            "stellar_http_request_duration_seconds",
            "Time to answer an HTTP request (to the start of the body for streams).",
            ["route", "method"],
            registry=registry,
        )
        self.rate_limited = Counter(
            "stellar_rate_limit_refusals",
            "Requests refused with 429, by rate-limit preset.",
            ["preset"],
            registry=registry,
        )
        self.rate_limit_local = Gauge(
            "stellar_rate_limit_redis_unavailable",
            "1 while Redis does not answer and this replica enforces rate limits on its own.",
            registry=registry,
        )
        self.sign_ins = Counter(
            "stellar_sign_ins",
            "Sign-in attempts, by method and outcome.",
            ["method", "outcome"],
            registry=registry,
        )
        self.node_calls = Counter(
            "stellar_node_calls",
            "Signed calls to node agents, by node, action and outcome.",
            ["node", "action", "outcome"],
            registry=registry,
        )
        self.node_call_seconds = Histogram(
            "stellar_node_call_duration_seconds",
            "Time a node took to answer a signed call.",
            ["node", "action"],
            registry=registry,
        )
        self.node_up = Gauge(
            "stellar_node_up",
            "1 when the node answered its last health poll, 0 when it did not.",
            ["node"],
            registry=registry,
        )
        self.node_clock_offset = Gauge(
            "stellar_node_clock_offset_seconds",
            "The node's clock minus this replica's, as its last health poll measured it.",
            ["node"],
            registry=registry,
        )
        self.event_stream_connected = Gauge(
            "stellar_node_event_stream_connected",
            "1 while this replica follows the node's event stream.",
            ["node"],
            registry=registry,
        )
        self.event_stream_follows = Counter(
            "stellar_node_event_stream_follows",
            "Times this replica started following the node's event stream (after a start, a "
            "dropped stream, or another replica's death: a takeover).",
            ["node"],
            registry=registry,
        )
        self.event_stream_leases_lost = Counter(
            "stellar_node_event_stream_leases_lost",
            "Node event-stream leases this replica lost without releasing them (its database "
            "session ended: an outage, or it was frozen past the lease's expiry).",
            registry=registry,
        )
        self.state_notifications = Gauge(
            "stellar_state_notifications_listening",
            "1 while this replica listens for the server state changes other replicas record "
            "(PostgreSQL LISTEN; 0 while it connects again).",
            registry=registry,
        )
        self.event_stream_lag = Gauge(
            "stellar_node_event_stream_lag_seconds",
            "Age of the node's latest resource sample when it arrived here (clock offset "
            "included).",
            ["node"],
            registry=registry,
        )
        self.job_runs = Counter(
            "stellar_background_job_runs",
            "Runs of background jobs, by job.",
            ["task"],
            registry=registry,
        )
        self.job_failures = Counter(
            "stellar_background_job_failures",
            "Runs of background jobs that failed, by job.",
            ["task"],
            registry=registry,
        )

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count and time one answer. The labelled children are kept per label set (a
        bounded set): the hot path skips ``labels()``'s lock and checks, half the cost."""
        key = (route, method, status)
        children = self._request_children.get(key)
        if children is None:
            children = self._request_children[key] = (
                self.requests.labels(route, method, str(status)),
                self.request_seconds.labels(route, method),
            )
        children[0].inc()
        children[1].observe(seconds)

    def watch_pool(self, engine: AsyncEngine) -> DatabasePoolCollector:
        """Report ``engine``'s pool until :meth:`unwatch` is called with what this returns."""
        collector = DatabasePoolCollector(engine)
        self.registry.register(collector)
        return collector

    def watch_list_cache(self, cache: ListCacheStats) -> ListCacheCollector:
        """Report ``cache``'s lookups until :meth:`unwatch` is called with what this returns."""
        collector = ListCacheCollector(cache)
        self.registry.register(collector)
        return collector

    def unwatch(self, collector: Collector) -> None:
        self.registry.unregister(collector)

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)
