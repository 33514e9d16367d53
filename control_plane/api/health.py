"""Liveness (``/healthz``) and readiness (``/readyz``).

``/healthz`` answers 200 while the process serves requests: a supervisor restarts it only
when it does not. ``/readyz`` says whether this replica can do its work now — its database
answers, Redis (when configured for the rate limits) answers, and it can reach the nodes
(``node_streams``: ``aside`` while it cannot reach those the other replicas follow,
control_plane/nodes/events.py; ``off`` without background jobs) — 200 or 503 with the state
of each, so a load balancer sends requests elsewhere meanwhile. Neither reveals anything
else.
"""

from __future__ import annotations

import asyncio
from typing import Final

from aiohttp import web
from sqlalchemy import text

from control_plane.keys import ENGINE, NODE_EVENTS, RATE_LIMITER

routes = web.RouteTableDef()
CHECK_SECONDS: Final = 2.0


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """200 while this process serves requests."""
    return web.json_response({"status": "ok"})


async def _database(request: web.Request) -> str:
    try:
        read_only = request.app[ENGINE].execution_options(stellar_read_only=True)
        async with asyncio.timeout(CHECK_SECONDS), read_only.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except Exception:
        return "unavailable"
    return "ok"


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    """200 when the database answers (and Redis, if used) and this replica reaches the nodes;
    else 503 and which one does not."""
    database = await _database(request)
    redis = await request.app[RATE_LIMITER].backend_state()
    events = request.app.get(NODE_EVENTS)
    node_streams = "off" if events is None else "aside" if events.aside else "ok"
    ready = database == "ok" and node_streams != "aside"
    return web.json_response(
        {
            "status": "ready" if ready else "unavailable",
            "database": database,
            "redis": redis,
            "node_streams": node_streams,
        },
        status=200 if ready else 503,
        headers={} if ready else {"Retry-After": "5"},
    )
