"""A container runtime without Docker, for the fleet benchmark's simulated nodes.

:class:`SimulatedRuntime` is the agent's own :class:`~node_agent.docker.containers.
ContainerRuntime` with every call to dockerd replaced by a table in memory: containers are
created, started, stopped, killed and removed at once, ``events()`` reports their start and
exit as dockerd's event stream would, and ``sample()`` returns made-up counters. Everything
above it (the server registry, power, state changes, the event bus, the sampler, the routes
and the command-token middleware) is the real agent's code. Create bodies and fingerprints
still come from ``hardening`` through the inherited methods.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from node_agent.docker.containers import ContainerRuntime, ContainerState
from node_agent.docker.errors import ContainerMissing
from node_agent.docker.events import ContainerEvent
from node_agent.docker.hardening import CONFIG_LABEL, ROLE_LABEL, SERVER_LABEL
from node_agent.docker.output import OutputLine
from node_agent.docker.stats import ContainerSample
from shared.server_spec import StopCommand, StopSignal


def _now() -> str:
    """Now as dockerd writes StartedAt and FinishedAt (nanoseconds, ``Z``)."""
    return f"{dt.datetime.now(dt.UTC):%Y-%m-%dT%H:%M:%S.%f}000Z"


class SimulatedRuntime(ContainerRuntime):
    """Containers as rows in a dict; their starts and exits as events."""

    def __init__(self) -> None:
        # No dockerd: every method that would use it is overridden below.
        super().__init__(docker=None)  # type: ignore[arg-type]
        self._containers: dict[str, ContainerState] = {}
        self._roles: dict[str, str] = {}
        self._listeners: list[asyncio.Queue[ContainerEvent]] = []
        self._cpu_ns: dict[str, int] = {}

    # --- images and creation ----------------------------------------------------------------

    async def ensure_image(self, image: str) -> None:
        return None

    async def image_volumes(self, image: str, *, pull: bool = True) -> tuple[str, ...]:
        return ()  # a simulated image declares no VOLUME

    async def _create(self, name: str, config: dict[str, Any]) -> ContainerState:
        labels = config.get("Labels") or {}
        server = labels.get(SERVER_LABEL)
        state = ContainerState(
            id=uuid.uuid4().hex,
            name=name,
            status="created",
            running=False,
            exit_code=None,
            oom_killed=False,
            pid=None,
            started_at=None,
            finished_at=None,
            server_id=uuid.UUID(server) if server else None,
            config_fingerprint=labels.get(CONFIG_LABEL),
        )
        self._containers[name] = state
        self._roles[name] = str(labels.get(ROLE_LABEL, ""))
        return state

    # --- reading ----------------------------------------------------------------------------

    async def inspect(self, name: str) -> ContainerState:
        try:
            return self._containers[name]
        except KeyError:
            raise ContainerMissing(f"no container {name}") from None

    async def list_managed(self) -> list[ContainerState]:
        return list(self._containers.values())

    def follow_output(
        self, name: str, *, since: str | None, tail: int | None
    ) -> AsyncIterator[OutputLine]:
        return self._no_output()

    async def _no_output(self) -> AsyncIterator[OutputLine]:
        # A quiet game: the stream stays open and says nothing, as a real one between lines.
        await asyncio.Event().wait()
        yield OutputLine(timestamp="", text="")  # pragma: no cover - never reached

    async def events(self, *, since: float | None) -> AsyncIterator[ContainerEvent]:
        queue: asyncio.Queue[ContainerEvent] = asyncio.Queue()
        self._listeners.append(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            self._listeners.remove(queue)

    async def sample(self, name: str) -> ContainerSample:
        state = await self.inspect(name)
        # CPU time grows by a random share of the wall time since the last sample.
        used = self._cpu_ns.get(name, 0) + random.randrange(10**6, 10**8)
        self._cpu_ns[name] = used
        memory = 256 * 1024 * 1024 if state.running else 0
        return ContainerSample(
            taken_at=time.time(),
            cpu_total_ns=used,
            system_cpu_ns=time.monotonic_ns(),
            online_cpus=2,
            memory_bytes=memory,
            memory_limit_bytes=512 * 1024 * 1024,
            network_rx_bytes=used // 1000,
            network_tx_bytes=used // 2000,
            pids=12,
        )

    # --- power ------------------------------------------------------------------------------

    async def start(self, name: str) -> ContainerState:
        state = await self.inspect(name)
        if not state.running:
            state = replace(
                state,
                status="running",
                running=True,
                exit_code=None,
                pid=4242,
                started_at=_now(),
            )
            self._set(name, state, "start")
        return state

    async def send_console_line(self, name: str, line: str) -> None:
        await self.inspect(name)

    async def signal(self, name: str, signal: str) -> None:
        state = await self.inspect(name)
        if state.running and signal in {"SIGKILL", "SIGTERM", "SIGINT"}:
            self._exit(name, 137 if signal == "SIGKILL" else 0)

    async def wait_for_exit(self, name: str, within_seconds: float) -> ContainerState | None:
        state = await self.inspect(name)
        return None if state.running else state

    async def stop(
        self, name: str, stop: StopCommand | StopSignal, grace_seconds: float
    ) -> ContainerState:
        state = await self.inspect(name)
        if state.running:
            self._exit(name, 0)
        return self._containers[name]

    async def remove(self, name: str) -> bool:
        self._roles.pop(name, None)
        self._cpu_ns.pop(name, None)
        return self._containers.pop(name, None) is not None

    # --- internals --------------------------------------------------------------------------

    def _exit(self, name: str, code: int) -> None:
        state = replace(
            self._containers[name],
            status="exited",
            running=False,
            exit_code=code,
            pid=None,
            finished_at=_now(),
        )
        self._set(name, state, "die")

    def _set(self, name: str, state: ContainerState, action: str) -> None:
        self._containers[name] = state
        if state.server_id is None:
            return
        event = ContainerEvent(
            action="start" if action == "start" else "die",
            container_id=state.id,
            server_id=state.server_id,
            role=self._roles.get(name, ""),
            exit_code=state.exit_code,
        )
        for queue in self._listeners:
            queue.put_nowait(event)
