"""Liveness and node facts."""

from __future__ import annotations

from aiohttp import web

from node_agent.keys import SYSTEM_JSON
from node_agent.security.verify import serves
from shared.node_api import Health
from shared.node_endpoints import (
    NODE_SYSTEM,
)

routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(_request: web.Request) -> web.Response:
    """No authentication, and nothing but liveness."""
    return web.json_response(Health().model_dump())


@serves(routes, NODE_SYSTEM)
async def system(request: web.Request) -> web.Response:
    """Node facts as last refreshed in the background (rendered then, not per request)."""
    return web.json_response(text=request.app[SYSTEM_JSON])
