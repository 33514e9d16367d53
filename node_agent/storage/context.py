"""The storage backend's lifetime on the agent's Application (a ``cleanup_ctx``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import web

from node_agent.docker.hardening import GAME_USER
from node_agent.keys import SETTINGS, STORAGE
from node_agent.storage.backend import open_storage


def game_user_ids() -> tuple[int, int]:
    """The uid and gid every volume belongs to (the containers' user)."""
    uid, gid = (int(part) for part in GAME_USER.split(":"))
    return uid, gid


async def storage_ctx(app: web.Application) -> AsyncIterator[None]:
    """Open the backend before the agent listens; start the usage poll if limits are polled.

    At shutdown a development agent unmounts what it mounted; a production agent leaves the
    pool mounted for the games that keep running.
    """
    settings = app[SETTINGS]
    storage = await open_storage(settings, *game_user_ids())
    app[STORAGE] = storage
    poll = None
    if storage.watch is not None:
        poll = asyncio.create_task(storage.watch.run_forever(), name="disk-usage-poll")
    yield
    if poll is not None:
        poll.cancel()
        await asyncio.gather(poll, return_exceptions=True)
    await storage.close(unmount=settings.environment == "development")
