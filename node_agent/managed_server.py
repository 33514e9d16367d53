"""One game server's life on this node: power actions, install, exits, crashes, its state.

:class:`ManagedServer` owns a server's record, volume and console, and its state
(``offline, installing, starting, running, stopping, crashed``). Power actions and the
installer take the server's lock, so two of them never interleave; ``kill`` does not wait
for it. Every exit of the game container is judged once (:meth:`ManagedServer.container_exited`):
asked for (stop, kill, restart, or the stop command typed on the console) or a clean exit 0
means ``offline``; anything else is a crash, restarted unless the server already crashed
within ``crash_loop_window`` seconds, in which case it stays ``crashed``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Final

import structlog

from node_agent.console.server_console import ServerConsole
from node_agent.docker.containers import ContainerRuntime, ContainerState
from node_agent.docker.hardening import (
    ContainerPlacement,
    game_container_name,
    install_container_name,
)
from node_agent.docker.network import AgentNetwork
from node_agent.events import NodeEventBus
from node_agent.files.gate import VolumeGate
from node_agent.server_records import RecordStore, ServerRecord
from node_agent.storage.volume import ServerVolume
from shared.errors import ApiError, Conflict, InvalidRequest
from shared.node_api import CrashEvent, InstallEvent, StateEvent
from shared.server_spec import (
    ContainerStatus,
    DesiredPower,
    InstallPhase,
    PowerActionName,
    ServerSpec,
    ServerState,
    ServerStatus,
    StopCommand,
)

log = structlog.get_logger("agent.servers")
# An installer that runs longer than this is killed and the install marked failed.
INSTALL_TIMEOUT_SECONDS: Final = 3600.0
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


@dataclass
class ManagedServer:
    """One server: its record on disk, volume, console and current state."""

    record: ServerRecord
    volume: ServerVolume
    console: ServerConsole
    services: ServerServices
    state: ServerState = "offline"
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # File operations vs a restore of the whole volume (node_agent/files/gate.py).
    volume_gate: VolumeGate = field(default_factory=VolumeGate)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    stop_task: asyncio.Task[None] | None = None
    # Set before the agent (or the user's stop command) ends the game: that exit is no crash.
    exit_expected: bool = False
    # FinishedAt of the last exit judged, so an exit seen twice (event + resync) counts once.
    judged_exit: str | None = None
    last_crash_at: float | None = None

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

    def set_state(self, state: ServerState) -> None:
        """Change the state and tell the control plane and the console's viewers."""
        if state == self.state:
            return
        log.info("server state", server=str(self.spec.uuid), state=state, previous=self.state)
        self.state = state
        self.services.events.publish(StateEvent(server=self.spec.uuid, state=state))
        self.console.status(state)

    async def _update_record(self, **changes: Any) -> None:
        if all(getattr(self.record, name) == value for name, value in changes.items()):
            return
        self.record = self.record.model_copy(update=changes)
        await self.services.records.save(self.record)

    async def set_disk_limit(self, disk_mib: int) -> None:
        """Change the volume's limit, then the record (the caller holds the lock)."""
        await self.volume.resize(disk_mib)
        spec = self.spec.model_copy(update={"disk_mib": disk_mib})
        await self._update_record(spec=spec)

    async def update_spec(self, spec: ServerSpec) -> None:
        """Store a new spec; rebuild the game container now if it is stopped (caller holds
        the lock), otherwise at its next start or restart (``spec_pending`` until then).

        The volume is left alone: its limit stays the one the record has (``resize_disk``
        changes it), whatever ``disk_mib`` the new spec says.
        """
        spec = spec.model_copy(update={"disk_mib": self.spec.disk_mib})
        await self._update_record(spec=spec, spec_pending=True)
        container = await self.services.runtime.find(self.container)
        if self.state in {"starting", "running", "stopping"}:
            return
        if container is not None and container.running:
            return
        try:
            await self._recreate_container()
        except ApiError as err:
            # The spec is stored: the next start builds the container (spec_pending).
            log.warning(
                "game container not rebuilt now", server=str(self.spec.uuid), error=err.message
            )

    async def _ensure_current_container(self) -> None:
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
        elif not existing.running and existing.config_fingerprint != runtime.game_fingerprint(
            self.spec, placement
        ):
            log.warning(
                "game container differs from what this agent creates: rebuilding it",
                server=str(self.spec.uuid),
            )
            await self._recreate_container()

    async def _recreate_container(self) -> None:
        """Remove the game container and build it again from the record's spec (under the
        lock, with the game not running); the volume keeps everything."""
        runtime = self.services.runtime
        await runtime.remove(self.container)
        network = await self.services.network()
        placement = ContainerPlacement(network.name, self.volume.path)
        await runtime.create_game_container(self.spec, placement)
        await self._update_record(spec_pending=False)
        log.info("game container rebuilt from the spec", server=str(self.spec.uuid))

    async def reinstall(self) -> None:
        """Run the spec's install step again on the stopped server (409 while it runs).

        The game container is rebuilt from the current spec first; without an install step
        that is all. Otherwise the installer runs in the background as at create, with state
        ``installing`` and an install event at the end.
        """
        install = self.spec.install
        if install is not None:
            await self.services.runtime.ensure_image(install.image)
        async with self.lock:
            if self.record.install == "installing":
                raise Conflict("the server is already installing")
            if self.stopping or self.state in {"starting", "running", "stopping"}:
                raise Conflict("stop the server before reinstalling it")
            container = await self.services.runtime.find(self.container)
            if container is not None and container.running:
                raise Conflict("stop the server before reinstalling it")
            install = self.spec.install
            await self._recreate_container()
            if install is None:
                log.info("reinstall: no install step", server=str(self.spec.uuid))
                return
            await self._update_record(install="installing", install_exit_code=None)
            self.set_state("installing")
        self.spawn(self.install(), name=f"reinstall-{self.spec.uuid}")

    async def _want(self, desired: DesiredPower, *, crashed: bool = False) -> None:
        await self._update_record(desired_power=desired, crashed=crashed)

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
        )

    # --- power -----------------------------------------------------------------------------

    async def power(self, action: PowerActionName) -> None:
        """Start or kill now; stop and restart proceed in the background."""
        if self.record.install == "installing":
            raise Conflict("the server is still installing")
        if action == "kill":
            await self.kill()
        elif action == "start":
            async with self.lock:
                await self.start()
        elif self.stopping:
            raise Conflict("the server is already stopping")
        else:
            restart = action == "restart"
            self.exit_expected = True
            await self._want("running" if restart else "stopped")
            if self.state in {"running", "starting"}:
                self.set_state("stopping")
            self.stop_task = self.spawn(
                self._stop(restart=restart), name=f"{action}-{self.spec.uuid}"
            )

    async def kill(self) -> None:
        self.exit_expected = True
        await self._want("stopped")
        if self.stop_task is not None:
            self.stop_task.cancel()
        container = await self.services.runtime.find(self.container)
        if container is None or not container.running:
            self.set_state("offline")
            return
        self.set_state("stopping")
        state = await self.services.runtime.kill(self.container)
        if not state.running:
            self.set_state("offline")

    async def start(self) -> None:
        """Start the game container (the caller holds the lock)."""
        if self.record.install == "installing":
            raise Conflict("the server is still installing")
        if self.record.install == "failed":
            raise Conflict("the server's install failed; reinstall it before starting")
        if self.stopping and asyncio.current_task() is not self.stop_task:
            raise Conflict("the server is stopping")
        runtime = self.services.runtime
        await self._want("running")
        self.exit_expected = False
        self.set_state("starting")
        try:
            if self.record.spec_pending:
                # The spec changed while the game ran: this start is where it takes effect.
                await self._recreate_container()
            else:
                await self._ensure_current_container()
            state = await runtime.start(self.container)
        except ApiError:
            self.set_state("offline")
            raise
        if state.running:
            self.set_state("running")
            self.console.wake()

    async def _stop(self, *, restart: bool) -> None:
        async with self.lock:
            try:
                state = await self.services.runtime.stop(
                    self.container, self.spec.stop, grace_seconds=self.spec.stop_timeout_seconds
                )
            except ApiError:
                found = await self.services.runtime.find(self.container)
                self.set_state("running" if found is not None and found.running else "offline")
                raise
            log.info("server stopped", server=str(self.spec.uuid), exit_code=state.exit_code)
            if not state.running:
                self.judged_exit = state.finished_at
                self.set_state("offline")
            if restart:
                await self.start()

    # --- what Docker reports -----------------------------------------------------------------

    async def container_started(self) -> None:
        """The game container is running (a start event, or found so by a resync)."""
        state = await self.services.runtime.find(self.container)
        if state is None or not state.running:
            return
        if self.state not in {"running", "stopping"}:
            self.set_state("running")
        self.console.wake()

    async def container_exited(self) -> None:
        """The game container stopped: judge the exit once (offline, or a crash)."""
        state = await self.services.runtime.find(self.container)
        if state is None or state.running or self.record.install == "installing":
            return
        if state.status == "created":
            # A container never started (just rebuilt from a new spec) has not exited: the
            # late exit event of the one it replaced finds it under the same name.
            return
        if state.finished_at is not None and state.finished_at == self.judged_exit:
            return
        self.judged_exit = state.finished_at
        if self.exit_expected or self.record.desired_power == "stopped":
            self.set_state("offline")
            return
        if state.exit_code == 0 and not state.oom_killed:
            log.info("game exited by itself", server=str(self.spec.uuid))
            await self._want("stopped")
            self.set_state("offline")
            return
        await self._crashed(state)

    async def _crashed(self, state: ContainerState) -> None:
        now = time.monotonic()
        window = self.services.crash_loop_window
        reason = "out of memory" if state.oom_killed else f"exit code {state.exit_code}"
        looping = self.last_crash_at is not None and now - self.last_crash_at < window
        self.last_crash_at = now
        if looping:
            reason = f"{reason}; it crashed before within {window:g} s, so it is not restarted"
            await self._want("stopped", crashed=True)
        log.warning("server crashed", server=str(self.spec.uuid), reason=reason)
        self.set_state("crashed")
        self.console.notice(f"server crashed ({reason})")
        self.services.events.publish(
            CrashEvent(
                server=self.spec.uuid,
                exit_code=state.exit_code,
                oom_killed=state.oom_killed,
                restarting=not looping,
                reason=reason,
            )
        )
        if not looping:
            self.spawn(self._restart_after_crash(), name=f"crash-restart-{self.spec.uuid}")

    async def _restart_after_crash(self) -> None:
        async with self.lock:
            if self.state == "crashed" and self.record.desired_power == "running":
                self.console.notice("restarting after the crash")
                await self.start()

    async def restore(self) -> None:
        """After an agent start: take the container's state, or bring back the desired one."""
        container = await self.services.runtime.find(self.container)
        if self.record.install == "installing":
            self.set_state("installing")
        elif container is not None and container.running:
            self.set_state("running")
            self.console.wake()
        elif self.record.desired_power == "running":
            # The host rebooted (or the game died while the agent was away): start it again.
            self.judged_exit = None if container is None else container.finished_at
            log.info("restoring desired power state", server=str(self.spec.uuid))
            self.state = "offline"
            self.spawn(self._start_locked(), name=f"restore-{self.spec.uuid}")
        else:
            self.set_state("crashed" if self.record.crashed else "offline")

    async def _start_locked(self) -> None:
        async with self.lock:
            await self.start()

    # --- console ---------------------------------------------------------------------------

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
            await self._want("stopped")
        await self.services.runtime.send_console_line(self.container, line)

    # --- install ---------------------------------------------------------------------------

    async def install(self) -> None:
        """Run the blueprint's install script in its one-off container, then record the outcome."""
        spec = self.spec
        install = spec.install
        if install is None:
            return
        runtime = self.services.runtime
        name = install_container_name(spec.uuid)
        exit_code: int | None = None
        self.set_state("installing")
        try:
            network = await self.services.network()
            placement = ContainerPlacement(network.name, self.volume.path)
            async with self.lock:
                await runtime.remove(name)
                await runtime.create_install_container(spec, install, placement)
                await runtime.start(name)
            state = await runtime.wait_for_exit(name, INSTALL_TIMEOUT_SECONDS)
            if state is None:
                state = await runtime.kill(name)
            exit_code = state.exit_code
            if install.needs_root:
                await self.volume.hand_to_game_user()
        except ApiError as err:
            log.warning("install failed", server=str(spec.uuid), error=err.message)
        finally:
            try:
                await runtime.remove(name)
            except ApiError as err:
                log.warning(
                    "install container not removed", server=str(spec.uuid), error=err.message
                )
        phase: InstallPhase = "installed" if exit_code == 0 else "failed"
        await self._update_record(install=phase, install_exit_code=exit_code)
        log.info("install finished", server=str(spec.uuid), phase=phase, exit_code=exit_code)
        self.services.events.publish(
            InstallEvent(server=spec.uuid, success=phase == "installed", exit_code=exit_code)
        )
        self.set_state("offline")

    # --- tasks -----------------------------------------------------------------------------

    def spawn(self, work: Coroutine[Any, Any, None], *, name: str) -> asyncio.Task[None]:
        """Run ``work`` in the background until it ends, the server goes or the agent stops."""

        async def run() -> None:
            try:
                await work
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
