"""One game server on this node: its record, volume, console, state, lock and tasks.

:class:`ManagedServer` is what the routes, consoles, backups and the registry hold. Its
state changes only through :meth:`ManagedServer.set_state` (``state.py``); what changes it
is in the modules of each concern: power actions (``power.py``), what Docker reports
(``exits.py``), crashes (``crash.py``) and the installer (``install.py``). Here: the record
kept on disk, the game container built from the spec, spec and disk-limit updates, console
commands, the status answer, and the background tasks the server owns.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import structlog

from node_agent.console.server_console import ServerConsole
from node_agent.docker.containers import ContainerRuntime, ContainerState
from node_agent.docker.hardening import ContainerPlacement, game_container_name
from node_agent.docker.network import AgentNetwork
from node_agent.events import NodeEventBus
from node_agent.files.gate import VolumeGate
from node_agent.servers import done, power
from node_agent.servers.crash import CrashPolicy
from node_agent.servers.records import RecordStore, ServerRecord
from node_agent.servers.state import ServerStateMachine
from node_agent.storage.volume import ServerVolume
from shared.errors import ApiError, Conflict, InvalidRequest, NotFound
from shared.server_spec import (
    ContainerStatus,
    DesiredPower,
    PowerActionName,
    ServerSpec,
    ServerState,
    ServerStatus,
    StopCommand,
)

log = structlog.get_logger("agent.servers")
NetworkSource = Callable[[], Awaitable[AgentNetwork]]


@dataclass(frozen=True)
class ServerServices:
    """What every server of this node shares."""

    runtime: ContainerRuntime
    records: RecordStore
    events: NodeEventBus
    network: NetworkSource
    crash_loop_window: float


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


class ManagedServer:
    """One server: its record on disk, volume, console and current state."""

    def __init__(
        self,
        record: ServerRecord,
        volume: ServerVolume,
        console: ServerConsole,
        services: ServerServices,
    ) -> None:
        self.record = record
        self.volume = volume
        self.console = console
        self.services = services
        self._state = ServerStateMachine(record.spec.uuid, services.events, console)
        # Armed by a start when the spec has done markers (``done.py``).
        self.done_watch = done.DoneWatch(str(record.spec.uuid))
        console.listen(lambda line: done.line_printed(self, line))
        self.crash_policy = CrashPolicy(services.crash_loop_window)
        # Taken through ``locked``/``acquire``: whoever waited for it while the server was
        # deleted is told so (404) instead of acting on a server that is gone.
        self.lock = asyncio.Lock()
        self.deleted = False
        # Held while the record file is written or removed: a write that began before the
        # deletion's removal ends before it, one that comes after finds ``deleted`` (404).
        # Writers that do not hold ``lock`` (kill, stop, a crash restart) take this one.
        self._record_lock = asyncio.Lock()
        # File operations vs a restore of the whole volume (node_agent/files/gate.py).
        self.volume_gate = VolumeGate()
        self.tasks: set[asyncio.Task[None]] = set()
        self.stop_task: asyncio.Task[None] | None = None
        # Set before the agent (or the user's stop command) ends the game: that exit is no crash.
        self.exit_expected = False
        # FinishedAt of the last exit judged, so an exit seen twice (event + resync) counts once.
        self.judged_exit: str | None = None

    async def acquire(self) -> None:
        """Take the server's lock; 404 if the server was deleted while this waited for it."""
        await self.lock.acquire()
        if self.deleted:
            self.lock.release()
            raise NotFound("no such server on this node")

    @contextlib.asynccontextmanager
    async def locked(self) -> AsyncIterator[None]:
        """Hold the server's lock (``acquire``) for the block."""
        await self.acquire()
        try:
            yield
        finally:
            self.lock.release()

    @property
    def spec(self) -> ServerSpec:
        return self.record.spec

    @property
    def container(self) -> str:
        return game_container_name(self.spec.uuid)

    @property
    def stopping(self) -> bool:
        return self.stop_task is not None and not self.stop_task.done()

    # --- state -----------------------------------------------------------------------------

    @property
    def state(self) -> ServerState:
        """The current state (no setter: it changes through :meth:`set_state` only)."""
        return self._state.state

    def set_state(self, state: ServerState) -> None:
        """Change the state and tell the control plane and the console's viewers, once."""
        if state != "starting":
            # Whatever ends a start (its done line, a stop, a crash) ends the wait for it.
            self.done_watch.disarm()
        self._state.change(state)

    # --- the record --------------------------------------------------------------------------

    async def update_record(self, **changes: Any) -> None:
        """Change fields of the record and save it (nothing written if nothing changes). A
        deleted server's record stays deleted: 404 (work that outlived the deletion)."""
        async with self._record_lock:
            if self.deleted:
                raise NotFound("no such server on this node")
            if all(getattr(self.record, name) == value for name, value in changes.items()):
                return
            self.record = self.record.model_copy(update=changes)
            await self.services.records.save(self.record)

    async def remove_record(self) -> None:
        """The deletion's last step (the caller holds the lock): the record file goes, after
        any write of it in progress, and the server is ``deleted`` for whoever comes next."""
        async with self._record_lock:
            await self.services.records.remove(self.spec.uuid)
            self.deleted = True

    async def want(self, desired: DesiredPower, *, crashed: bool = False) -> None:
        """Record the power state the server should be in (restored after an agent start)."""
        await self.update_record(desired_power=desired, crashed=crashed)

    async def set_disk_limit(self, disk_mib: int) -> None:
        """Change the volume's limit, then the record (the caller holds the lock)."""
        await self.volume.resize(disk_mib)
        spec = self.spec.model_copy(update={"disk_mib": disk_mib})
        await self.update_record(spec=spec)

    async def update_spec(self, spec: ServerSpec) -> None:
        """Store a new spec; rebuild the game container now if it is stopped (caller holds
        the lock), otherwise at its next start or restart (``spec_pending`` until then). A
        spec identical to the current one changes nothing, nor does one older than it
        (a lower ``revision``).

        The volume is left alone: its limit stays the one the record has (``resize_disk``
        changes it), whatever ``disk_mib`` the new spec says.
        """
        if spec.is_older_than(self.spec):
            # Sent before the one kept here (it was held up on the way): the newer stays.
            log.info(
                "older spec ignored",
                server=str(spec.uuid),
                revision=spec.revision,
                kept=self.spec.revision,
            )
            return
        spec = spec.model_copy(update={"disk_mib": self.spec.disk_mib})
        if spec == self.spec:
            return
        if spec.model_copy(update={"revision": self.spec.revision}) == self.spec:
            # The control plane sends the spec, numbered anew, before each start: the same
            # one under a new number is kept as the newest and changes nothing else.
            await self.update_record(spec=spec)
            return
        await self.update_record(spec=spec, spec_pending=True)
        container = await self.services.runtime.find(self.container)
        if self.state in {"starting", "running", "stopping"}:
            return
        if container is not None and container.running:
            return
        try:
            await self.rebuild_container()
        except ApiError as err:
            # The spec is stored: the next start builds the container (spec_pending).
            log.warning(
                "game container not rebuilt now", server=str(self.spec.uuid), error=err.message
            )

    # --- the game container ------------------------------------------------------------------

    async def ensure_current_container(self) -> None:
        """Before a start: the game container exists and is exactly what this agent would
        create now. One removed behind the agent's back is built again; one made from another
        create body (an older agent's weaker hardening, a container put there by hand) is
        rebuilt, unless it is running."""
        runtime = self.services.runtime
        existing = await runtime.find(self.container)
        network = await self.services.network()
        placement = ContainerPlacement(network.name, self.volume.path)
        if existing is None:
            await runtime.create_game_container(self.spec, placement)
        elif not existing.running and existing.config_fingerprint != (
            await runtime.game_fingerprint(self.spec, placement)
        ):
            log.warning(
                "game container differs from what this agent creates: rebuilding it",
                server=str(self.spec.uuid),
            )
            await self.rebuild_container()

    async def rebuild_container(self) -> None:
        """Remove the game container and build it again from the record's spec (under the
        lock, with the game not running); the volume keeps everything."""
        runtime = self.services.runtime
        await runtime.remove(self.container)
        network = await self.services.network()
        placement = ContainerPlacement(network.name, self.volume.path)
        await runtime.create_game_container(self.spec, placement)
        await self.update_record(spec_pending=False)
        log.info("game container rebuilt from the spec", server=str(self.spec.uuid))

    async def status(self) -> ServerStatus:
        """The server's state, install phase and its game container as Docker reports it."""
        container = await self.services.runtime.find(self.container)
        return ServerStatus(
            uuid=self.spec.uuid,
            state=self.state,
            desired_power=self.record.desired_power,
            install=self.record.install,
            install_exit_code=self.record.install_exit_code,
            stopping=self.stopping,
            container=_container_status(container),
            disk_mib=self.spec.disk_mib,
            spec_pending=self.record.spec_pending,
            spec_revision=self.spec.revision,
            last_install=self.record.last_install,
        )

    # --- what users do -----------------------------------------------------------------------

    async def power(self, action: PowerActionName) -> None:
        """Start or kill now; stop and restart proceed in the background (``power.py``)."""
        await power.run_power_action(self, action)

    async def send_command(self, line: str) -> None:
        """Type ``line`` on the game's console (400 if the game is not running)."""
        if self.record.install == "installing":
            raise Conflict("the server is still installing")
        container = await self.services.runtime.find(self.container)
        if container is None or not container.running:
            raise InvalidRequest("the server is not running")
        stop = self.spec.stop
        if isinstance(stop, StopCommand) and line.strip() == stop.value:
            # The user stopped the game from its console: its exit is no crash.
            self.exit_expected = True
            await self.want("stopped")
        await self.services.runtime.send_console_line(self.container, line)

    # --- tasks -------------------------------------------------------------------------------

    def spawn(self, work: Coroutine[Any, Any, None], *, name: str) -> asyncio.Task[None]:
        """Run ``work`` in the background until it ends, the server goes or the agent stops."""

        async def run() -> None:
            try:
                await work
            except NotFound as err:
                if not self.deleted:
                    log.warning("background task failed", task=name, error=err.message)
            except ApiError as err:
                log.warning("background task failed", task=name, error=err.message)
            except Exception:
                log.exception("background task failed", task=name)

        task = asyncio.create_task(run(), name=name)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        # Cancelled before it ran, ``run`` never awaited ``work``: close it, so that it is
        # not reported as a coroutine never awaited.
        task.add_done_callback(lambda _: work.close())
        return task

    async def close(self) -> None:
        """Cancel and await the background tasks and the console (the container keeps running)."""
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.console.close()
