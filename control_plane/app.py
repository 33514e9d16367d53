"""The control plane's application factory: no I/O until the app starts."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
from aiohttp import web

from control_plane.api import health, openapi
from control_plane.api.registry import ROUTE_TABLES
from control_plane.db.engine import create_engine, read_session_factory, session_factory
from control_plane.db.reader import StatementReader
from control_plane.keys import (
    CONSOLES,
    ENGINE,
    HTTP,
    NODES,
    RATE_LIMITER,
    READ_SESSIONS,
    SECRET_BOX,
    SESSIONS,
    SETTINGS,
    STATEMENT_READER,
    WALL_CLOCK,
)
from control_plane.middlewares import cors, install_security_headers, refuse_unstorable_text
from control_plane.nodes.client import NodeClient
from control_plane.nodes.console import ConsoleSessions
from control_plane.nodes.events import node_event_listener
from control_plane.nodes.health import node_health_monitor
from control_plane.scheduling.clock import SchedulerClock
from control_plane.scheduling.runner import scheduler_ctx
from control_plane.security.authn import authenticate
from control_plane.security.command_signing import CommandSigner
from control_plane.security.encryption import SecretBox
from control_plane.security.rate_limit import (
    MemoryBackend,
    RateLimitBackend,
    RateLimiter,
    RedisBackend,
    parse_presets,
)
from control_plane.settings import ControlPlaneSettings
from shared.http import error_shape, request_context


async def database_ctx(app: web.Application) -> AsyncIterator[None]:
    engine = create_engine(app[SETTINGS].database_url or "")
    app[ENGINE] = engine
    app[SESSIONS] = session_factory(engine)
    app[READ_SESSIONS] = read_session_factory(engine)
    app[STATEMENT_READER] = reader = StatementReader(engine)
    yield
    reader.close()
    await engine.dispose()


async def node_client_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    signer = (
        CommandSigner.from_file(Path(settings.signing_key_file), issuer=settings.issuer)
        if settings.signing_key_file
        else None
    )
    async with aiohttp.ClientSession() as session:
        app[HTTP] = session
        app[NODES] = NodeClient(
            session,
            signer,
            timeout=settings.node_timeout_seconds,
            allow_plain_http=not settings.is_production,
        )
        yield


async def consoles_ctx(app: web.Application) -> AsyncIterator[None]:
    app[CONSOLES] = ConsoleSessions()
    yield
    await app[CONSOLES].close_all()


def rate_limiter_ctx(
    clock: Callable[[], float],
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        settings = app[SETTINGS]
        backend: RateLimitBackend = (
            RedisBackend(settings.redis_url)
            if settings.redis_url
            else MemoryBackend(max_keys=settings.rate_limit_max_keys, clock=clock)
        )
        app[RATE_LIMITER] = RateLimiter(backend, parse_presets(settings.rate_limits))
        yield
        await backend.close()

    return ctx


def create_app(
    settings: ControlPlaneSettings,
    *,
    background_jobs: bool = True,
    clock: Callable[[], float] = time.monotonic,
    wall_clock: Callable[[], float] = time.time,
    scheduler_clock: SchedulerClock | None = None,
) -> web.Application:
    """The app; ``clock`` drives the in-memory rate limits, ``wall_clock`` TOTP time steps and
    ``scheduler_clock`` the schedules (tests move them by hand). Without ``background_jobs``
    the scheduler does not tick by itself (tests call its ``tick``)."""
    app = web.Application(
        middlewares=[request_context, error_shape, refuse_unstorable_text, cors, authenticate],
        client_max_size=1024 * 1024,
    )
    app[SETTINGS] = settings
    app[SECRET_BOX] = SecretBox.from_settings(settings)
    app[WALL_CLOCK] = wall_clock
    app.cleanup_ctx.extend([database_ctx, node_client_ctx, consoles_ctx, rate_limiter_ctx(clock)])
    app.cleanup_ctx.append(scheduler_ctx(scheduler_clock, loop=background_jobs))
    if background_jobs:
        app.cleanup_ctx.extend([node_health_monitor, node_event_listener])
    install_security_headers(app)
    app.add_routes(health.routes)
    app.add_routes(openapi.routes)
    for table in ROUTE_TABLES:
        app.add_routes(table.routes())
    return app
