"""The agent's application factory: no I/O until the app starts."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator

import aiodocker
import structlog
from aiohttp import web

from node_agent.api import servers, system
from node_agent.docker.containers import ContainerRuntime
from node_agent.docker.errors import DockerUnavailable
from node_agent.docker.hardening import GAME_USER
from node_agent.docker.network import ensure_agent_network
from node_agent.facts import facts_refresher
from node_agent.keys import DOCKER, REPLAY_CACHE, SERVERS, SETTINGS, VERIFIER
from node_agent.security.replay import PersistentReplayCache
from node_agent.security.verify import require_command
from node_agent.servers import ServerRegistry
from node_agent.settings import AgentSettings
from node_agent.volumes import DirectoryVolume
from shared.http import error_shape, request_context
from shared.protocol import CommandVerifier

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
    """cleanup_ctx: load the servers' records; ensure the agent network if Docker answers."""
    settings = app[SETTINGS]
    docker = app[DOCKER]
    uid, gid = (int(part) for part in GAME_USER.split(":"))
    registry = ServerRegistry(
        data_dir=settings.data_dir,
        runtime=ContainerRuntime(docker),
        volumes=lambda server_id: DirectoryVolume(settings.data_dir, server_id, uid, gid),
        network=functools.partial(ensure_agent_network, docker),
    )
    await registry.load()
    try:
        await ensure_agent_network(docker)
    except DockerUnavailable as err:
        # Not fatal: the agent still answers, and creates the network on first use.
        log.warning("agent network not ready", error=err.message)
    app[SERVERS] = registry
    yield
    await registry.close()


def create_app(settings: AgentSettings) -> web.Application:
    app = web.Application(
        middlewares=[request_context, error_shape, require_command],
        client_max_size=settings.max_body_bytes,
    )
    app[SETTINGS] = settings
    app.cleanup_ctx.extend([replay_cache_ctx, docker_ctx, facts_refresher, server_registry_ctx])
    app.add_routes(system.routes)
    app.add_routes(servers.routes)
    return app
