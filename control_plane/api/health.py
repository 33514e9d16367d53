"""Liveness and readiness."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy import text

from control_plane.errors import ApiError
from control_plane.keys import ENGINE

routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """200 when the database answers; reveals nothing else."""
    try:
        read_only = request.app[ENGINE].execution_options(stellar_read_only=True)
        async with read_only.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except Exception as err:
        raise ApiError("database unavailable") from err
    return web.json_response({"status": "ok"})
