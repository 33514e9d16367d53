"""Liveness and node facts."""

from __future__ import annotations

from aiohttp import web

from node_agent import __version__
from node_agent.keys import FACTS, SETTINGS
from node_agent.security.verify import command
from shared.node_api import Health, SystemInfo

routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(_request: web.Request) -> web.Response:
    """No authentication, and nothing but liveness."""
    return web.json_response(Health().model_dump())


@routes.get("/api/v1/system")
@command("node.system")
async def system(request: web.Request) -> web.Response:
    info = SystemInfo(
        node_id=request.app[SETTINGS].node_id,
        agent_version=__version__,
        facts=request.app[FACTS],
    )
    return web.json_response(text=info.model_dump_json())
