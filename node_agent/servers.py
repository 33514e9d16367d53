"""The servers this node runs: their specs on disk, their volumes, containers and power.

:class:`ServerRegistry` is what the HTTP routes call. It keeps one JSON record per server in
``<data_dir>/servers/<uuid>.json`` (written atomically), so that the agent knows its servers
after a restart. Creating a server checks the images first and undoes every step on failure,
so a refused create leaves no container, volume or record behind. An install script and a
graceful stop run as background tasks; ``kill`` and ``delete`` never wait for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import structlog
from pydantic import BaseModel, ConfigDict, ValidationError

from node_agent.docker.containers import ContainerRuntime, ContainerState
from node_agent.docker.hardening import (
    ContainerPlacement,
    game_container_name,
    install_container_name,
)
from node_agent.docker.network import AgentNetwork
from node_agent.volumes import ServerVolume
from shared.errors import ApiError, Conflict, NotFound
from shared.server_spec import (
    ContainerStatus,
    InstallPhase,
    PowerActionName,
    ServerSpec,
    ServerStatus,
)

log = structlog.get_logger("agent.servers")
SERVERS_DIR: Final = "servers"
# An installer that runs longer than this is killed and the install marked failed.
INSTALL_TIMEOUT_SECONDS: Final = 3600.0

VolumeFactory = Callable[[uuid.UUID], ServerVolume]
NetworkSource = Callable[[], Awaitable[AgentNetwork]]


class ServerRecord(BaseModel):
    """What the agent keeps on disk about one server."""

    model_config = ConfigDict(extra="forbid")

    spec: ServerSpec
    install: InstallPhase = "none"
    install_exit_code: int | None = None


@dataclass
class _Server:
    record: ServerRecord
    volume: ServerVolume
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    stop_task: asyncio.Task[None] | None = None

    @property
    def spec(self) -> ServerSpec:
        return self.record.spec

    @property
    def stopping(self) -> bool:
        return self.stop_task is not None and not self.stop_task.done()


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_suffix(".tmp")
    with temporary.open("w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def _read_records(directory: Path) -> list[tuple[Path, str]]:
    if not directory.is_dir():
        return []
    return [(path, path.read_text(encoding="utf-8")) for path in sorted(directory.glob("*.json"))]


def _container_status(state: ContainerState | None) -> ContainerStatus | None:
    if state is None:
        return None
    return ContainerStatus(
        status=state.status,
        running=state.running,
        exit_code=state.exit_code,
        oom_killed=state.oom_killed,
        started_at=state.started_at,
        finished_at=state.finished_at,
    )


class ServerRegistry:
    """Every server on this node, by uuid."""

    def __init__(
        self,
        *,
        data_dir: Path,
        runtime: ContainerRuntime,
        volumes: VolumeFactory,
        network: NetworkSource,
    ) -> None:
        self._records_dir = data_dir / SERVERS_DIR
        self._runtime = runtime
        self._volumes = volumes
        self._network = network
        self._servers: dict[uuid.UUID, _Server] = {}
        self._creating: set[uuid.UUID] = set()

    # --- lifecycle -------------------------------------------------------------------------

    async def load(self) -> None:
        """Read the records the agent wrote before it (re)started."""
        for path, text in await asyncio.to_thread(_read_records, self._records_dir):
            try:
                record = ServerRecord.model_validate_json(text)
            except ValidationError:
                log.error("unreadable server record skipped", path=str(path))
                continue
            if record.install == "installing":
                # The task that watched the installer died with the previous process.
                record = record.model_copy(update={"install": "failed"})
            server_id = record.spec.uuid
            self._servers[server_id] = _Server(record, self._volumes(server_id))
        log.info("servers loaded", count=len(self._servers))

    async def close(self) -> None:
        """Cancel and await the background tasks (containers keep running)."""
        tasks = [task for server in self._servers.values() for task in server.tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # --- queries ---------------------------------------------------------------------------

    def _get(self, server_id: uuid.UUID) -> _Server:
        server = self._servers.get(server_id)
        if server is None:
            raise NotFound("no such server on this node")
        return server

    async def status(self, server_id: uuid.UUID) -> ServerStatus:
        """The server's install phase and its game container as Docker reports it now."""
        server = self._get(server_id)
        state = await self._runtime.find(game_container_name(server_id))
        return ServerStatus(
            uuid=server_id,
            install=server.record.install,
            install_exit_code=server.record.install_exit_code,
            stopping=server.stopping,
            container=_container_status(state),
        )

    # --- create and delete -----------------------------------------------------------------

    async def create(self, spec: ServerSpec) -> ServerStatus:
        """Make the volume and the (stopped) game container; start the installer if any."""
        if spec.uuid in self._servers or spec.uuid in self._creating:
            raise Conflict("a server with this uuid already exists on this node")
        self._creating.add(spec.uuid)
        try:
            server = await self._build(spec)
        finally:
            self._creating.discard(spec.uuid)
        self._servers[spec.uuid] = server
        if spec.install is not None:
            self._spawn(server, self._install(server), name=f"install-{spec.uuid}")
        log.info("server created", server=str(spec.uuid), install=server.record.install)
        return await self.status(spec.uuid)

    async def _build(self, spec: ServerSpec) -> _Server:
        network = await self._network()
        # Images first: a missing image then costs nothing to undo.
        await self._runtime.ensure_image(spec.image)
        if spec.install is not None:
            await self._runtime.ensure_image(spec.install.image)
        volume = self._volumes(spec.uuid)
        record = ServerRecord(spec=spec, install="none" if spec.install is None else "installing")
        try:
            await volume.create(spec.disk_mib)
        except FileExistsError as err:
            raise Conflict("a volume for this server already exists on this node") from err
        try:
            placement = ContainerPlacement(network.name, volume.path)
            await self._runtime.create_game_container(spec, placement)
            await self._save(record)
        except BaseException:
            await self._undo_create(spec.uuid, volume)
            raise
        return _Server(record, volume)

    async def _undo_create(self, server_id: uuid.UUID, volume: ServerVolume) -> None:
        with contextlib.suppress(ApiError):
            await self._runtime.remove(game_container_name(server_id))
        await volume.remove()
        await asyncio.to_thread(self._record_path(server_id).unlink, missing_ok=True)

    async def delete(self, server_id: uuid.UUID) -> None:
        """Kill and remove the server's containers, then its volume and record."""
        server = self._get(server_id)
        for task in list(server.tasks):
            task.cancel()
        await asyncio.gather(*server.tasks, return_exceptions=True)
        async with server.lock:
            await self._runtime.remove(install_container_name(server_id))
            await self._runtime.remove(game_container_name(server_id))
            await server.volume.remove()
            await asyncio.to_thread(self._record_path(server_id).unlink, missing_ok=True)
            del self._servers[server_id]
        log.info("server deleted", server=str(server_id))

    # --- power -----------------------------------------------------------------------------

    async def power(self, server_id: uuid.UUID, action: PowerActionName) -> ServerStatus:
        """Start or kill now; stop and restart proceed in the background."""
        server = self._get(server_id)
        if action == "kill":
            if server.stop_task is not None:
                server.stop_task.cancel()
            await self._runtime.kill(game_container_name(server_id))
        elif action == "start":
            async with server.lock:
                await self._start(server)
        elif server.stopping:
            raise Conflict("the server is already stopping")
        else:
            restart = action == "restart"
            server.stop_task = self._spawn(
                server, self._stop(server, restart=restart), name=f"{action}-{server_id}"
            )
        return await self.status(server_id)

    async def _start(self, server: _Server) -> None:
        if server.record.install == "installing":
            raise Conflict("the server is still installing")
        if server.record.install == "failed":
            raise Conflict("the server's install failed; reinstall it before starting")
        if server.stopping:
            raise Conflict("the server is stopping")
        name = game_container_name(server.spec.uuid)
        if await self._runtime.find(name) is None:
            # Removed behind the agent's back: build it again from the spec.
            network = await self._network()
            placement = ContainerPlacement(network.name, server.volume.path)
            await self._runtime.create_game_container(server.spec, placement)
        await self._runtime.start(name)

    async def _stop(self, server: _Server, *, restart: bool) -> None:
        name = game_container_name(server.spec.uuid)
        async with server.lock:
            state = await self._runtime.stop(
                name, server.spec.stop, grace_seconds=server.spec.stop_timeout_seconds
            )
            log.info("server stopped", server=str(server.spec.uuid), exit_code=state.exit_code)
        if restart:
            server.stop_task = None
            async with server.lock:
                await self._start(server)

    # --- install ---------------------------------------------------------------------------

    async def _install(self, server: _Server) -> None:
        spec = server.spec
        install = spec.install
        if install is None:
            return
        name = install_container_name(spec.uuid)
        exit_code: int | None = None
        try:
            network = await self._network()
            placement = ContainerPlacement(network.name, server.volume.path)
            async with server.lock:
                await self._runtime.remove(name)
                await self._runtime.create_install_container(spec, install, placement)
                await self._runtime.start(name)
            state = await self._runtime.wait_for_exit(name, INSTALL_TIMEOUT_SECONDS)
            if state is None:
                state = await self._runtime.kill(name)
            exit_code = state.exit_code
            if install.needs_root:
                await server.volume.hand_to_game_user()
        except ApiError as err:
            log.warning("install failed", server=str(spec.uuid), error=err.message)
        finally:
            with contextlib.suppress(ApiError):
                await self._runtime.remove(name)
        phase: InstallPhase = "installed" if exit_code == 0 else "failed"
        server.record = server.record.model_copy(
            update={"install": phase, "install_exit_code": exit_code}
        )
        await self._save(server.record)
        log.info("install finished", server=str(spec.uuid), phase=phase, exit_code=exit_code)

    # --- helpers ---------------------------------------------------------------------------

    def _spawn(self, server: _Server, work: Awaitable[None], *, name: str) -> asyncio.Task[None]:
        async def run() -> None:
            try:
                await work
            except ApiError as err:
                log.warning("background task failed", task=name, error=err.message)

        task = asyncio.create_task(run(), name=name)
        server.tasks.add(task)
        task.add_done_callback(server.tasks.discard)
        return task

    def _record_path(self, server_id: uuid.UUID) -> Path:
        return self._records_dir / f"{server_id}.json"

    async def _save(self, record: ServerRecord) -> None:
        path = self._record_path(record.spec.uuid)
        await asyncio.to_thread(_write_atomically, path, record.model_dump_json())
