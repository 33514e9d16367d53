"""The agent's application factory: no I/O until the app starts."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator

import aiodocker
import structlog
from aiohttp import web

from node_agent.api import backups, console, files, servers, sftp, storage, system
from node_agent.api import events as events_api
from node_agent.backups.recovery import settle_restores
from node_agent.backups.store import BackupStore
from node_agent.console.session import OpenSockets
from node_agent.docker.containers import ContainerRuntime
from node_agent.docker.errors import DockerUnavailable
from node_agent.docker.network import ensure_agent_network
from node_agent.docker.seccomp_context import game_seccomp_ctx
from node_agent.egress.keeper import egress_ctx
from node_agent.events import NodeEventBus
from node_agent.facts import facts_refresher
from node_agent.keys import (
    DOCKER,
    GAME_SECCOMP,
    METRICS,
    NODE_EVENTS,
    OPEN_SOCKETS,
    REPLAY_CACHE,
    SERVERS,
    SETTINGS,
    STATS,
    STORAGE,
    VERIFIER,
)
from node_agent.metrics import AgentMetrics
from node_agent.sampler import resource_sampler_ctx
from node_agent.security.replay import PersistentReplayCache
from node_agent.security.verify import largest_body, require_command, tell_time
from node_agent.servers.records import RecordStore
from node_agent.servers.registry import ServerRegistry
from node_agent.servers.server import ServerServices
from node_agent.settings import AgentSettings
from node_agent.sftp.listener import sftp_table_ctx
from node_agent.stats import ServerStatsReader
from node_agent.storage.context import storage_ctx
from shared.http import error_shape, request_context
from shared.http_server import install_response_headers
from shared.protocol import MAX_TOKEN_LENGTH, CommandVerifier

log = structlog.get_logger("agent")


async def replay_cache_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    cache = PersistentReplayCache(settings.replay_log)
    cache.open()
    app[REPLAY_CACHE] = cache
    app[VERIFIER] = CommandVerifier(
        trusted_keys=settings.public_keys(),
        issuer=settings.issuer,
        node_id=settings.node_id,
        replay_cache=cache,
        leeway=settings.token_leeway_seconds,
    )
    log.info("replay cache loaded", live_ids=len(cache))
    yield
    cache.close()


async def docker_ctx(app: web.Application) -> AsyncIterator[None]:
    docker = aiodocker.Docker(url=app[SETTINGS].docker_url)
    app[DOCKER] = docker
    yield
    await docker.close()


async def server_registry_ctx(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: load the servers, restore their states, follow Docker; stop no game
    (unless ``stop_servers_on_exit``: then every one, at exit)."""
    settings = app[SETTINGS]
    docker = app[DOCKER]
    events = NodeEventBus()
    metrics = app[METRICS]
    events.observers.append(metrics.observe_event)
    services = ServerServices(
        runtime=ContainerRuntime(
            docker,
            on_pull=events.image_pull,
            seccomp=app[GAME_SECCOMP].profile,
            registries=settings.image_registries,
        ),
        records=RecordStore(settings.data_dir),
        events=events,
        network=functools.partial(ensure_agent_network, docker, settings.docker_network),
        crash_loop_window=settings.crash_loop_window_seconds,
    )
    registry = ServerRegistry(
        services=services,
        volumes=app[STORAGE].volume,
        console_limits=settings.console,
        on_throttle=metrics.throttled,
    )
    await registry.load()
    try:
        await ensure_agent_network(docker, settings.docker_network)
    except DockerUnavailable as err:
        # Not fatal: the agent still answers, and creates the network on first use.
        log.warning("agent network not ready", error=err.message)
    # A restore the agent died in is settled first: no game may start on half-swapped files.
    await settle_restores(BackupStore(settings.data_dir), registry)
    await registry.restore()
    app[NODE_EVENTS] = events
    app[SERVERS] = registry
    app[STATS] = ServerStatsReader(registry)
    app[STORAGE].set_over_limit_hook(registry.over_disk_limit)
    watched = metrics.watch_servers(registry)
    yield
    metrics.unwatch(watched)
    app[STORAGE].set_over_limit_hook(None)
    await app[STATS].close()
    await registry.close()
    if settings.stop_servers_on_exit:
        # Before storage_ctx's teardown: a running game would keep the pool busy.
        await registry.stop_all()


async def close_sockets(app: web.Application) -> None:
    """on_shutdown: close console and event sockets (1001) so shutdown does not wait on them."""
    app[OPEN_SOCKETS].close_all()


def create_app(settings: AgentSettings) -> web.Application:
    app = web.Application(
        middlewares=[request_context, error_shape, require_command],
        client_max_size=largest_body(settings.max_body_bytes),
        # Room for the longest command token, and for a longer one to reach the verifier,
        # which refuses it with a 401 and a log line rather than the parser's bare 400.
        handler_args={"max_field_size": 2 * MAX_TOKEN_LENGTH},
    )
    app[SETTINGS] = settings
    app[METRICS] = AgentMetrics()
    # No headers of its own, but no Server header either, parser refusals included.
    install_response_headers(app, {})
    app.on_response_prepare.append(tell_time)
    app[OPEN_SOCKETS] = OpenSockets()
    app.on_shutdown.append(close_sockets)
    app.cleanup_ctx.extend(
        [
            replay_cache_ctx,
            docker_ctx,
            egress_ctx,
            storage_ctx,
            game_seccomp_ctx,
            sftp_table_ctx,
            facts_refresher,
            server_registry_ctx,
            resource_sampler_ctx,
        ]
    )
    app.add_routes(system.routes)
    app.add_routes(servers.routes)
    app.add_routes(console.routes)
    app.add_routes(events_api.routes)
    app.add_routes(storage.routes)
    files.setup(app)
    backups.setup(app)
    sftp.setup(app)
    return app
