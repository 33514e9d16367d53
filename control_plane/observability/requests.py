"""Request metrics: every answer counted and timed by its route template."""

from __future__ import annotations

from aiohttp import web

from control_plane.keys import METRICS
from control_plane.observability.metrics import UNMATCHED_ROUTE


def route_template(request: web.Request) -> str:
    """The matched route's template (``/api/v1/servers/{server_id}``), never the raw path:
    the label's values are the route table's, however many ids and typos clients send."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else UNMATCHED_ROUTE


def observe_request(request: web.Request, status: int, seconds: float) -> None:
    """Count one answer by route, method and status, and time it. Told by the outermost
    middleware (``shared.http.request_context_with``), so refusals are counted with the
    status the client got."""
    # Methods outside the usual few share one label value (a client picks the method).
    method = request.method if request.method in _METHODS else "OTHER"
    request.app[METRICS].observe_request(route_template(request), method, status, seconds)


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
