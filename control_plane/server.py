"""``stellar-cp serve``: refuse to start on an unmigrated database, then serve."""

from __future__ import annotations

import asyncio

import structlog

from control_plane.app import create_app
from control_plane.db import migrate as migrations
from control_plane.db.engine import create_engine
from control_plane.settings import ControlPlaneSettings
from shared.http_server import run_app
from shared.logging import configure_logging


class SchemaOutOfDate(Exception):
    """The database is not at the code's migration head."""


async def _check_schema(settings: ControlPlaneSettings) -> None:
    engine = create_engine(settings.database_url or "")
    try:
        current = await migrations.current_revision(engine)
    finally:
        await engine.dispose()
    head = migrations.head_revision()
    if current != head:
        raise SchemaOutOfDate(
            f"database is at revision {current or 'none'}, code expects {head}: "
            "run `stellar-cp migrate`"
        )


def serve(settings: ControlPlaneSettings) -> int:
    configure_logging(level=settings.log_level)
    log = structlog.get_logger("control_plane")
    try:
        asyncio.run(_check_schema(settings))
    except SchemaOutOfDate as err:
        log.error("not starting", reason=str(err))
        return 2
    log.info("starting", host=settings.host, port=settings.port, environment=settings.environment)
    run_app(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        shutdown_timeout=10,
        keepalive_timeout=15,
    )
    return 0
