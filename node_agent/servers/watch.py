"""Following dockerd, so that every start and exit of a game container reaches its server.

:class:`ContainerWatch` takes each server's state from Docker (a resync), then follows
Docker's event stream from just before it; when the stream breaks (dockerd restarting) it
waits :data:`EVENTS_RETRY_SECONDS` and starts over. Events from before the resync are seen
again after it, which is harmless: an exit is judged once (``exits.py``). At the agent's
start it also logs, and leaves alone, containers with the agent's label that it does not know.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Final

import structlog

from node_agent.docker.containers import ContainerRuntime
from node_agent.docker.events import ContainerEvent
from node_agent.docker.hardening import game_container_name, install_container_name
from node_agent.servers import exits
from node_agent.servers.server import ManagedServer
from shared.errors import ApiError

log = structlog.get_logger("agent.servers")
# After the event stream breaks (dockerd restarting), wait this long before following again.
EVENTS_RETRY_SECONDS: Final = 1.0


class ContainerWatch:
    """Docker's view of the game containers, handed to the servers of ``servers``."""

    def __init__(self, runtime: ContainerRuntime, servers: dict[uuid.UUID, ManagedServer]) -> None:
        self._runtime = runtime
        # The registry's own mapping: servers created or deleted later are seen too.
        self._servers = servers
        self._task: asyncio.Task[None] | None = None

    async def report_strangers(self) -> None:
        """Log every container with the agent's label that belongs to no known server."""
        try:
            containers = await self._runtime.list_managed()
        except ApiError as err:
            log.warning("managed containers not listed", error=err.message)
            return
        for container in containers:
            known = container.server_id in self._servers and container.name in {
                game_container_name(container.server_id),
                install_container_name(container.server_id),
            }
            if not known:
                log.warning(
                    "unknown managed container left alone",
                    container=container.name,
                    container_id=container.id[:12],
                    server=str(container.server_id),
                )

    def start(self) -> None:
        """Follow Docker in the background until :meth:`close`."""
        self._task = asyncio.create_task(self._follow(), name="container-watch")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _follow(self) -> None:
        while True:
            # Events from ``since`` are replayed after the resync; judging an exit is idempotent.
            since = time.time()
            try:
                await self._resync()
                async for event in self._runtime.events(since=since):
                    await self._on_event(event)
            except ApiError as err:
                log.warning("docker events interrupted", error=err.message)
            await asyncio.sleep(EVENTS_RETRY_SECONDS)

    async def _resync(self) -> None:
        for server in list(self._servers.values()):
            if server.state == "running" or (
                # A game waiting for its done line may have died while the stream was down.
                server.state == "starting" and server.done_watch.run_started
            ):
                await exits.container_exited(server)
            elif server.state not in {"starting", "stopping", "installing"}:
                await exits.container_started(server)

    async def _on_event(self, event: ContainerEvent) -> None:
        server = self._servers.get(event.server_id)
        if server is None or event.role != "game":
            return
        try:
            if event.action == "start":
                await exits.container_started(server)
            else:
                await exits.container_exited(server)
        except ApiError as err:
            log.warning(
                "container event not handled", server=str(event.server_id), error=err.message
            )
