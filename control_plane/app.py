"""The control plane's application factory: no I/O until the app starts."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import structlog
from aiohttp import web

from control_plane import background
from control_plane.api import health, openapi
from control_plane.api.compat.errors import render as render_error
from control_plane.api.list_cache import ListCache
from control_plane.api.registry import PAGE_TABLES, ROUTE_TABLES
from control_plane.db.engine import (
    connections_returned,
    create_engine,
    read_session_factory,
    session_factory,
)
from control_plane.db.leases import LeaseKeeper
from control_plane.db.reader import StatementReader
from control_plane.keys import (
    CONSOLES,
    ENGINE,
    HTTP,
    LEASES,
    LIST_CACHE,
    LISTING_ROUTES,
    MAIL,
    METRICS,
    NODES,
    RATE_LIMITER,
    READ_SESSIONS,
    SECRET_BOX,
    SESSIONS,
    SETTINGS,
    STATE_FANOUT,
    STATEMENT_READER,
    WALL_CLOCK,
    WEBHOOK_GUARD,
)
from control_plane.mail.outbox import MAIL_CONTEXT, MailContext
from control_plane.mail.sender import MailSender
from control_plane.middlewares import (
    cors,
    database_faults,
    rate_limit_headers,
    refuse_unstorable_text,
    security_headers,
)
from control_plane.nodes.client import NodeClient
from control_plane.nodes.console import ConsoleSessions
from control_plane.nodes.events import node_event_listener
from control_plane.nodes.health import node_health_monitor
from control_plane.nodes.transport import node_session
from control_plane.observability.metrics import ControlPlaneMetrics
from control_plane.observability.requests import observe_request
from control_plane.observability.retention import retention_job
from control_plane.scheduling.clock import SchedulerClock
from control_plane.scheduling.runner import scheduler_ctx
from control_plane.security.authn import authenticate
from control_plane.security.command_signing import CommandSigner
from control_plane.security.encryption import SecretBox
from control_plane.security.rate_limit import (
    FailoverBackend,
    MemoryBackend,
    RateLimitBackend,
    RateLimiter,
    RedisBackend,
    parse_presets,
)
from control_plane.services.state_fanout import FANOUT, StateFanout, state_fanout_ctx
from control_plane.services.webhooks.dispatcher import webhook_dispatcher_ctx
from control_plane.services.webhooks.guard import WebhookUrlGuard
from control_plane.settings import ControlPlaneSettings
from control_plane.web.setup import page_errors, page_headers, static_routes, web_ctx
from shared.http import error_shape_with, request_context_with
from shared.http_server import install_response_headers
from shared.ssrf import HostResolver, resolve_with_system_dns

log = structlog.get_logger("control_plane")


async def database_ctx(app: web.Application) -> AsyncIterator[None]:
    engine = create_engine(app[SETTINGS].database_url or "")
    app[ENGINE] = engine
    settings = app[SETTINGS]
    mail = MailContext(settings.link_base) if settings.mail_enabled else None
    info: dict[str, object] = {FANOUT: app[STATE_FANOUT]}
    if mail is not None:
        info[MAIL_CONTEXT] = mail
    app[SESSIONS] = session_factory(engine, info)
    app[READ_SESSIONS] = read_session_factory(engine)
    app[STATEMENT_READER] = reader = StatementReader(engine)
    app[LIST_CACHE] = cache = ListCache()
    pool = app[METRICS].watch_pools({"main": engine.sync_engine.pool, "reads": reader.pool})
    kept = app[METRICS].watch_list_cache(cache)
    yield
    app[METRICS].unwatch(kept)
    app[METRICS].unwatch(pool)
    # Last of the app's cleanups, so every task that holds a connection has been stopped;
    # work that outlived its task (shielded) still may: it finishes first, or dispose would
    # drop its connection unclosed. Bounded: a connection stuck in a driver must not hold
    # the shutdown forever.
    try:
        async with asyncio.timeout(background.STOP_SECONDS):
            await connections_returned(engine)
    except TimeoutError:
        log.error(
            "database connections still in use at shutdown; closing the others",
            pool=engine.pool.status(),
        )
    try:
        async with asyncio.timeout(background.STOP_SECONDS):
            await reader.close()
            await engine.dispose()
    except TimeoutError:
        log.error("database connections did not close in time; shutting down without them")


async def leases_ctx(app: web.Application) -> AsyncIterator[None]:
    """This replica's leases, renewed while the app runs (background jobs use them)."""
    app[LEASES] = keeper = LeaseKeeper(app[ENGINE])
    app[METRICS].replica_clock_offset.set_function(
        lambda: math.nan if keeper.clock_offset is None else keeper.clock_offset
    )
    keeper.start()
    await keeper.open()
    yield
    await keeper.close()


async def node_client_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    signer = (
        CommandSigner.from_file(Path(settings.signing_key_file), issuer=settings.issuer)
        if settings.signing_key_file
        else None
    )
    async with aiohttp.ClientSession() as session, node_session() as to_nodes:
        app[HTTP] = session
        app[NODES] = NodeClient(
            to_nodes,
            signer,
            timeout=settings.node_timeout_seconds,
            allow_plain_http=not settings.is_production,
            metrics=app[METRICS],
        )
        yield


async def consoles_ctx(app: web.Application) -> AsyncIterator[None]:
    app[CONSOLES] = ConsoleSessions()
    yield
    await app[CONSOLES].close_all()


async def close_consoles(app: web.Application) -> None:
    """on_shutdown: close the open consoles (1001, going away) before the stop waits for the
    requests under way, which a console's would hold until the shutdown timeout; the browser
    reconnects to another replica."""
    await app[CONSOLES].close_all()


async def mail_sender_ctx(app: web.Application) -> AsyncIterator[None]:
    """Send the outbox in the background while the app runs (only when SMTP is set up)."""
    sender = MailSender(app[SETTINGS], app[SESSIONS], app[LEASES])
    app[MAIL] = sender
    task = asyncio.create_task(sender.run(), name="mail-sender")
    yield
    await background.stop(task)


def rate_limiter_ctx(
    clock: Callable[[], float],
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        settings = app[SETTINGS]
        local = MemoryBackend(max_keys=settings.rate_limit_max_keys, clock=clock)
        backend: RateLimitBackend = local
        if settings.redis_url:
            gauge = app[METRICS].rate_limit_local
            backend = FailoverBackend(
                RedisBackend(settings.redis_url),
                local,
                on_change=lambda down: gauge.set(1 if down else 0),
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
    resolver: HostResolver = resolve_with_system_dns,
    scheduler_clock: SchedulerClock | None = None,
) -> web.Application:
    """The app; ``clock`` drives the in-memory rate limits, ``wall_clock`` TOTP time steps and
    ``scheduler_clock`` the schedules (tests move them by hand; without ``background_jobs`` the
    scheduler does not tick by itself: tests call its ``tick``); ``resolver`` answers DNS for
    webhook URLs (tests give names of their own)."""
    app = web.Application(
        middlewares=[
            # The request id, the log line and the request metrics (counted with the
            # status the client got, refusals included).
            request_context_with(observe_request),
            # Errors in our shape, or Pterodactyl's on its paths (/api/application, /api/client).
            error_shape_with(render_error),
            page_errors,
            database_faults,
            refuse_unstorable_text,
            cors,
            authenticate,
        ],
        client_max_size=1024 * 1024,
    )
    app[SETTINGS] = settings
    app[METRICS] = ControlPlaneMetrics()
    app[SECRET_BOX] = SecretBox.from_settings(settings)
    app[WALL_CLOCK] = wall_clock
    app[STATE_FANOUT] = StateFanout(app)
    app[WEBHOOK_GUARD] = guard = WebhookUrlGuard(resolver, settings.webhook_test_networks)
    app.cleanup_ctx.extend([database_ctx, node_client_ctx, consoles_ctx, state_fanout_ctx])
    app.on_shutdown.append(close_consoles)
    app.cleanup_ctx.extend([rate_limiter_ctx(clock), web_ctx])
    app.cleanup_ctx.append(scheduler_ctx(scheduler_clock, loop=background_jobs))
    if background_jobs:
        app.cleanup_ctx.extend(
            [
                leases_ctx,
                node_health_monitor,
                node_event_listener,
                retention_job,
                webhook_dispatcher_ctx(guard),
            ]
        )
    if background_jobs and settings.mail_enabled:
        app.cleanup_ctx.append(mail_sender_ctx)
    # The guide's headers on every answer (errors, streams and aiohttp's own refusals
    # included), no Server header; then the bucket's rate-limit headers and a page's own.
    install_response_headers(
        app, security_headers(settings), then=(rate_limit_headers, page_headers)
    )
    app.add_routes(health.routes)
    app.add_routes(openapi.routes)
    for table in ROUTE_TABLES + PAGE_TABLES:
        app.add_routes(table.routes())
    app[LISTING_ROUTES] = frozenset(
        (endpoint.method, endpoint.path)
        for table in ROUTE_TABLES + PAGE_TABLES
        for endpoint in table.endpoints
        if endpoint.kept_lists
    )
    app.add_routes(static_routes)
    return app
