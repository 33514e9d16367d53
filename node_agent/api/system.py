"""Liveness and node facts."""

from __future__ import annotations

from aiohttp import web

from node_agent.keys import METRICS, SYSTEM_JSON
from node_agent.metrics import CONTENT_TYPE
from node_agent.security.verify import serves
from shared.node_api import Health
from shared.node_endpoints import NODE_METRICS, NODE_SYSTEM

routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(_request: web.Request) -> web.Response:
    """No authentication, and nothing but liveness."""
    return web.json_response(Health().model_dump())


@serves(routes, NODE_SYSTEM)
async def system(request: web.Request) -> web.Response:
    """Node facts as last refreshed in the background (rendered then, not per request)."""
    return web.json_response(text=request.app[SYSTEM_JSON])


@serves(routes, NODE_METRICS)
async def metrics(request: web.Request) -> web.Response:
    """The agent's Prometheus metrics (text format), for a signed ``node.metrics`` command."""
    return web.Response(body=request.app[METRICS].render(), headers={"Content-Type": CONTENT_TYPE})
