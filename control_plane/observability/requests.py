"""Request metrics: one middleware counts and times every answer by its route template."""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from control_plane.keys import METRICS
from control_plane.observability.metrics import UNMATCHED_ROUTE
from shared.http import CANCELLED_STATUS, Handler


def route_template(request: web.Request) -> str:
    """The matched route's template (``/api/v1/servers/{server_id}``), never the raw path:
    the label's values are the route table's, however many ids and typos clients send."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else UNMATCHED_ROUTE


@web.middleware
async def observe_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count each answer by route, method and status, and time it. Placed outside the error
    shape, so refusals are counted with the status the client got."""
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    except asyncio.CancelledError:
        status = CANCELLED_STATUS
        raise
    finally:
        # Methods outside the usual few share one label value (a client picks the method).
        method = request.method if request.method in _METHODS else "OTHER"
        request.app[METRICS].observe_request(
            route_template(request), method, status, time.perf_counter() - started
        )


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
