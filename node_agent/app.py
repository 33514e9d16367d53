"""The agent's application factory: no I/O until the app starts."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiodocker
import structlog
from aiohttp import web

from node_agent.api import system
from node_agent.facts import facts_refresher
from node_agent.keys import DOCKER, REPLAY_CACHE, SETTINGS, VERIFIER
from node_agent.security.replay import PersistentReplayCache
from node_agent.security.verify import require_command
from node_agent.settings import AgentSettings
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


def create_app(settings: AgentSettings) -> web.Application:
    app = web.Application(
        middlewares=[request_context, error_shape, require_command],
        client_max_size=settings.max_body_bytes,
    )
    app[SETTINGS] = settings
    app.cleanup_ctx.extend([replay_cache_ctx, docker_ctx, facts_refresher])
    app.add_routes(system.routes)
    return app
