"""Prometheus metrics: the control plane's own, and each node agent's relayed.

Never public: an administrator's API key with the ``metrics`` scope, or a client whose
address is in ``STELLAR_METRICS_SCRAPERS`` (docs/metrics.md). A node's metrics are read from
its agent with a signed ``node.metrics`` command, so the agent keeps its one door.

    GET /metrics                      this replica's metrics
    GET /metrics/nodes/{node_id}      that node agent's metrics
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from control_plane.api.routing import Access, ApiRequest, ApiRoutes
from control_plane.keys import METRICS
from control_plane.observability.metrics import CONTENT_TYPE
from control_plane.security.api_keys import Scope
from control_plane.services.infrastructure import get_node

routes = ApiRoutes("metrics", access=Access.ADMIN)


def _text(body: bytes) -> web.Response:
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


@routes.get(
    "/metrics",
    summary="This control-plane replica's Prometheus metrics (text format)",
    scope=Scope.METRICS,
    scrapers=True,
    rate_limit="metrics",
    transactional=False,
)
async def control_plane_metrics(req: ApiRequest[Any, Any]) -> web.Response:
    return _text(req.http.app[METRICS].render())


@routes.get(
    "/metrics/nodes/{node_id}",
    summary="A node agent's Prometheus metrics (text format), read with a signed command",
    scope=Scope.METRICS,
    scrapers=True,
    rate_limit="metrics",
    transactional=False,
    calls_node=True,
)
async def node_metrics(req: ApiRequest[Any, Any]) -> web.Response:
    async with req.transaction(write=False) as db:
        node = await get_node(db, req.uuid_param("node_id"))
    return _text(await req.nodes.node_metrics(node))
