"""A server's resource history (control_plane/services/resource_history.py).

GET /api/v1/servers/{server_id}/stats/history?range=1h    stats.read
"""

from __future__ import annotations

from typing import Any

from control_plane.api.routing import ApiRequest, ApiRoutes
from control_plane.keys import WALL_CLOCK
from control_plane.schemas.stats_history import StatsHistoryOut, StatsHistoryQuery
from control_plane.services import resource_history

routes = ApiRoutes("servers")


@routes.get(
    "/api/v1/servers/{server_id}/stats/history",
    summary="CPU, memory, network and disk over time, downsampled (for graphs)",
    permission="stats.read",
    query=StatsHistoryQuery,
    response=StatsHistoryOut,
)
async def stats_history(req: ApiRequest[Any, StatsHistoryQuery]) -> dict[str, Any]:
    now = req.http.app[WALL_CLOCK]()
    resolution, points = await resource_history.history(req.db, req.server.id, req.query.range, now)
    return {"range": req.query.range, "resolution_seconds": resolution, "points": points}
