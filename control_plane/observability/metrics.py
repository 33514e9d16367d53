"""The control plane's Prometheus metrics, on a ``CollectorRegistry`` of the app's own.

One :class:`ControlPlaneMetrics` per application (``app[METRICS]``), never a module global:
two apps in one process (tests, replicas in a harness) never mix their numbers. Every label
takes values from a bounded set: route templates (never raw paths), methods, status codes,
rate-limit presets, node names, node API actions.
"""

from __future__ import annotations

import bisect
import itertools
import math
import time
from collections.abc import Iterator, Mapping
from typing import Final, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString
from sqlalchemy.pool import Pool

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Where a request matched no route: one label value for every unknown path.
UNMATCHED_ROUTE = "unmatched"


class DatabasePoolCollector(Collector):
    """The replica's connection pools, read at scrape time (nothing to keep up to date), by
    name: ``main`` (the engine's: sessions, writes) and ``reads`` (the statement reader's:
    authentication and lists, ``control_plane.db.reader``)."""

    def __init__(self, pools: Mapping[str, Pool]) -> None:
        self._pools = dict(pools)

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "stellar_db_pool_connections",
            "Database connections of this replica's pools, by pool and state.",
            labels=["pool", "state"],
        )
        sized = GaugeMetricFamily(
            "stellar_db_pool_size",
            "Configured size of each connection pool (overflow not included).",
            labels=["pool"],
        )
        for name, pool in self._pools.items():
            # SQLite's pools may lack the queue pool's counters; report what exists.
            checked_out = getattr(pool, "checkedout", None)
            checked_in = getattr(pool, "checkedin", None)
            size = getattr(pool, "size", None)
            if callable(checked_out):
                family.add_metric([name, "in_use"], float(checked_out()))
            if callable(checked_in):
                family.add_metric([name, "idle"], float(checked_in()))
            if callable(size):
                sized.add_metric([name], float(size()))
        yield family
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


# The histogram's bounds as its "le" labels, written as prometheus_client writes them.
_BOUNDS: Final = tuple(
    str(floatToGoString(bound))  # type: ignore[no-untyped-call]
    for bound in Histogram.DEFAULT_BUCKETS[:-1]
)


class RequestCollector(Collector):
    """Requests answered and their durations, counted in plain numbers and turned into
    ``stellar_http_requests_total`` and the ``stellar_http_request_duration_seconds``
    histogram at scrape time. Counted on the event loop only (one thread): prometheus_client's
    children take a lock and check the metric on every increment, a fortieth of a listed
    page's CPU; here an answer is a dict look-up and two additions."""

    BUCKETS: Final = tuple(Histogram.DEFAULT_BUCKETS[:-1])  # +Inf is the count

    def __init__(self) -> None:
        self._answers: dict[tuple[str, str, str], int] = {}
        # (route, method) -> [count per bucket (the last: past every bound), sum of seconds]
        self._durations: dict[tuple[str, str], tuple[list[int], list[float]]] = {}
        # status code -> its text, made once
        self._statuses: dict[int, str] = {}
        # When each label set was first seen (the ``_created`` samples, as prometheus_client's)
        self._created: dict[tuple[str, ...], float] = {}

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        code = self._statuses.get(status)
        if code is None:
            code = self._statuses[status] = str(status)
        key = (route, method, code)
        count = self._answers.get(key)
        if count is None:
            count = 0
            self._created[key] = time.time()
        self._answers[key] = count + 1
        durations = self._durations.get((route, method))
        if durations is None:
            durations = self._durations[(route, method)] = ([0] * (len(self.BUCKETS) + 1), [0.0])
            self._created[(route, method)] = time.time()
        durations[0][bisect.bisect_left(self.BUCKETS, seconds)] += 1
        durations[1][0] += seconds

    def collect(self) -> Iterator[Metric]:
        answers = CounterMetricFamily(
            "stellar_http_requests",
            "HTTP requests answered, by route template, method and status.",
            labels=["route", "method", "status"],
        )
        created = self._created
        for labels, count in list(self._answers.items()):
            answers.add_metric(list(labels), float(count), created=created[labels])
        yield answers
        durations = HistogramMetricFamily(
            "stellar_http_request_duration_seconds",
            "Time to answer an HTTP request (to the start of the body for streams).",
            labels=["route", "method"],
        )
        for route_method, (counts, total) in list(self._durations.items()):
            cumulative = list(itertools.accumulate(counts))
            buckets = [(bound, float(n)) for bound, n in zip(_BOUNDS, cumulative, strict=False)]
            buckets.append(("+Inf", float(cumulative[-1])))
            durations.add_metric(list(route_method), buckets, total[0])
            durations.samples.append(
                Sample(
                    "stellar_http_request_duration_seconds_created",
                    dict(zip(("route", "method"), route_method, strict=True)),
                    created[route_method],
                )
            )
        yield durations


class ControlPlaneMetrics:
    """Every metric of one control-plane process."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self.requests = RequestCollector()
        registry.register(self.requests)
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
        self.replica_clock_offset = Gauge(
            "stellar_replica_clock_offset_seconds",
            "This replica's clock minus the database server's (PostgreSQL), measured at each"
            " lease renewal; NaN when not measured (SQLite).",
            registry=registry,
        )
        self.replica_clock_offset.set(math.nan)
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
        self.node_events_aside = Gauge(
            "stellar_node_events_aside",
            "1 while this replica stands aside: the nodes the other replicas follow do not "
            "answer it, so it follows none and is not counted in their shares "
            "(control_plane/nodes/events.py).",
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
        self.node_events_dropped = Counter(
            "stellar_node_events_dropped",
            "Events the node says it dropped for this replica's stream (it fell behind); the "
            "node's servers are read again after them.",
            ["node"],
            registry=registry,
        )
        self.node_events_not_audited = Counter(
            "stellar_node_events_not_audited",
            "Events of the node applied but not audited: past its audit budget.",
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
        """Count and time one answer (``RequestCollector``)."""
        self.requests.observe(route, method, status, seconds)

    def watch_pools(self, pools: Mapping[str, Pool]) -> DatabasePoolCollector:
        """Report these named pools until :meth:`unwatch` is called with what this returns."""
        collector = DatabasePoolCollector(pools)
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
