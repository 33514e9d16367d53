"""Node facts (CPU, memory, disk, Docker version), refreshed in the background.

``GET /api/v1/system`` answers from the last refresh, so a request never waits on Docker.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiodocker
import structlog
from aiohttp import web

from node_agent import __version__
from node_agent.docker.seccomp import GameSeccomp
from node_agent.keys import (
    DOCKER,
    FACTS,
    GAME_SECCOMP,
    SETTINGS,
    SFTP_ACCESS,
    SFTP_INFO,
    STORAGE,
    SYSTEM_JSON,
)
from node_agent.storage.backend import NodeStorage
from shared.node_api import NodeFacts, SystemInfo

log = structlog.get_logger("agent.facts")


def _host_totals(data_dir: Path) -> tuple[int, int, int, int]:
    usage = shutil.disk_usage(data_dir)
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return os.cpu_count() or 1, memory, usage.total, usage.free


async def read_facts(
    data_dir: Path,
    docker: aiodocker.Docker | None,
    storage: NodeStorage | None = None,
    seccomp: GameSeccomp | None = None,
) -> NodeFacts:
    """Measure the host now."""
    cpus, memory, disk_total, disk_free = await asyncio.to_thread(_host_totals, data_dir)
    docker_version: str | None = None
    docker_error: str | None = None
    if docker is None:
        docker_error = "no Docker client"
    else:
        try:
            version = await docker.version()
            docker_version = str(version.get("Version"))
        except (aiodocker.DockerError, OSError, TimeoutError) as err:
            docker_error = f"Docker engine not reachable: {type(err).__name__}"
    return NodeFacts(
        cpu_count=cpus,
        memory_bytes=memory,
        disk_total_bytes=disk_total,
        disk_free_bytes=disk_free,
        docker_version=docker_version,
        docker_error=docker_error,
        refreshed_at=time.time(),
        storage_backend=None if storage is None else storage.backend,
        storage_enforced=None if storage is None else storage.enforced,
        nested_subvolumes_blocked=None if seccomp is None else seccomp.blocks_nested_subvolumes,
    )


def publish(app: web.Application, facts: NodeFacts) -> None:
    """Make ``facts`` the node's, and render the system answer from them once."""
    app[FACTS] = facts
    app[SYSTEM_JSON] = SystemInfo(
        node_id=app[SETTINGS].node_id,
        agent_version=__version__,
        facts=facts,
        sftp=app.get(SFTP_INFO),
        sftp_access_version=app[SFTP_ACCESS].version if SFTP_ACCESS in app else None,
    ).model_dump_json()


async def facts_refresher(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: measure once before serving, then again every ``facts_refresh_seconds``."""
    settings = app[SETTINGS]
    docker = app.get(DOCKER)
    storage = app.get(STORAGE)
    seccomp = app.get(GAME_SECCOMP)
    publish(app, await read_facts(settings.data_dir, docker, storage, seccomp))
    if app[FACTS].docker_error:
        log.warning("docker unavailable", error=app[FACTS].docker_error)

    async def refresh_forever() -> None:
        while True:
            await asyncio.sleep(settings.facts_refresh_seconds)
            try:
                publish(app, await read_facts(settings.data_dir, docker, storage, seccomp))
            except OSError as err:
                log.warning("facts refresh failed", error=str(err))

    task = asyncio.create_task(refresh_forever(), name="facts-refresher")
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
