"""The request metrics counted in plain numbers (``RequestCollector``) are exposed exactly as
prometheus_client's own Counter and Histogram expose the same answers."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from control_plane.observability.metrics import ControlPlaneMetrics

ANSWERS = [
    ("/api/v1/servers", "GET", 200, 0.0031),
    ("/api/v1/servers", "GET", 200, 0.005),  # on a bound: counted in that bucket
    ("/api/v1/servers", "GET", 429, 0.0004),
    ("/api/v1/servers/{server_id}", "POST", 204, 0.42),
    ("unmatched", "OTHER", 404, 12.5),  # past every bound
]


def _lines(text: bytes, prefix: str) -> list[str]:
    """The family's lines, the ``_created`` ones without their time (when first seen)."""
    return sorted(
        line.rpartition(" ")[0] if "_created" in line else line
        for line in text.decode().splitlines()
        if line.startswith(prefix)
    )


def test_exposed_as_prometheus_clients_counter_and_histogram_expose_them() -> None:
    ours = ControlPlaneMetrics()
    registry = CollectorRegistry()
    requests = Counter(
        "stellar_http_requests", "x", ["route", "method", "status"], registry=registry
    )
    seconds = Histogram(
        "stellar_http_request_duration_seconds", "x", ["route", "method"], registry=registry
    )
    for route, method, status, took in ANSWERS:
        ours.observe_request(route, method, status, took)
        requests.labels(route, method, str(status)).inc()
        seconds.labels(route, method).observe(took)
    theirs = generate_latest(registry)
    prefixes = (
        "stellar_http_requests_total",
        "stellar_http_requests_created",
        "stellar_http_request_duration_seconds",
    )
    for prefix in prefixes:
        expected = _lines(theirs, prefix)
        assert expected
        assert _lines(ours.render(), prefix) == expected
