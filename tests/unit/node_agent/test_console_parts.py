"""The small pure parts behind consoles, stats and events."""

from __future__ import annotations

import asyncio
import gc
import uuid
from collections.abc import AsyncIterator, Coroutine
from types import SimpleNamespace
from typing import Any, cast

from aiohttp import WSMessage, WSMsgType

from node_agent.console.limits import ConsoleLimits
from node_agent.console.server_console import ConsoleViewer
from node_agent.console.session import ConsoleSession, send_frames
from node_agent.console.throttle import OutputThrottle, throttle_notice
from node_agent.docker.output import docker_since
from node_agent.docker.stats import ContainerSample
from node_agent.events import NodeEventBus
from shared.node_api import EventsDropped, StateEvent


def test_throttle_passes_the_limit_per_window_and_reports_the_rest_once() -> None:
    throttle = OutputThrottle(limit=3)
    assert throttle.roll(0.0) == 0
    passed = [throttle.admit() for _ in range(10)]
    assert passed == [True] * 3 + [False] * 7
    assert throttle.roll(0.5) == 0, "the window is not over yet"
    assert throttle.roll(1.0) == 7
    assert throttle.admit() is True
    assert throttle_notice(7) == "[stellar] output throttled: 7 lines dropped"


def test_throttle_dropped_lines_taken_early_are_not_reported_again() -> None:
    throttle = OutputThrottle(limit=1)
    throttle.roll(0.0)
    throttle.admit()
    throttle.admit()
    assert throttle.take_dropped() == 1
    assert throttle.roll(2.0) == 0


def test_docker_since_keeps_nanoseconds() -> None:
    assert docker_since("1970-01-01T00:00:10.123456789Z") == "10.123456789"
    assert docker_since("1970-01-01T00:00:10Z") == "10.000000000"


def test_cpu_percent_is_relative_to_one_core() -> None:
    def sample(cpu: int, system: int) -> ContainerSample:
        return ContainerSample(0.0, cpu, system, 2, 0, 0, 0, 0, 0)

    earlier = sample(0, 0)
    # Two cores: the system clock advances 2 ns per ns; one busy core is half of it.
    assert sample(1_000, 2_000).cpu_percent_since(earlier) == 100.0
    assert sample(2_000, 2_000).cpu_percent_since(earlier) == 200.0
    assert sample(1_000, 2_000).cpu_percent_since(None) == 0.0


def test_memory_leaves_out_the_page_cache() -> None:
    data = {
        "memory_stats": {"usage": 10_000, "limit": 50_000, "stats": {"total_inactive_file": 4_000}},
        "networks": {"eth0": {"rx_bytes": 5, "tx_bytes": 7}, "eth1": {"rx_bytes": 1}},
        "pids_stats": {"current": 3},
        "cpu_stats": {"cpu_usage": {"total_usage": 9}, "system_cpu_usage": 99, "online_cpus": 2},
    }
    sample = ContainerSample.from_stats(data, 1.0)
    assert (sample.memory_bytes, sample.memory_limit_bytes) == (6_000, 50_000)
    assert (sample.network_rx_bytes, sample.network_tx_bytes, sample.pids) == (6, 7, 3)


async def test_slow_subscriber_loses_events_counted_and_is_told_once_caught_up() -> None:
    bus = NodeEventBus(queue_events=2)
    slow = bus.subscribe()
    server = uuid.uuid4()
    for state in ("starting", "running", "stopping", "offline"):
        bus.publish(StateEvent(server=server, state=state))

    received = [await asyncio.wait_for(slow.next(), 1) for _ in range(3)]

    assert [type(event).__name__ for event in received] == [
        "StateEvent",
        "StateEvent",
        "EventsDropped",
    ]
    assert received[2] == EventsDropped(count=2)
    assert bus.dropped == 2


# --- task ownership: nothing a socket starts outlives it (filterwarnings=error catches a
# coroutine never awaited; the task list shows a task left pending) ---


class FakeSocket:
    """Enough of a server-side WebSocket: the inbound messages given, frames sent recorded."""

    def __init__(self, inbound: list[str]) -> None:
        self._inbound = inbound
        self.sent: list[str] = []
        self.closed = False
        self.close_code: int | None = None

    def __aiter__(self) -> AsyncIterator[WSMessage]:
        return self._messages()

    async def _messages(self) -> AsyncIterator[WSMessage]:
        # No await between messages: the socket may end before a spawned action ever ran.
        for text in self._inbound:
            yield WSMessage(WSMsgType.TEXT, text, None)

    async def send_str(self, text: str) -> None:
        self.sent.append(text)

    async def close(self, *, code: int, message: bytes) -> None:
        self.closed, self.close_code = True, code


class FakeLease:
    expires_at = 0.0

    def seconds_left(self) -> float:
        return 3600.0

    def warn_at(self) -> float:
        return 3600.0


class FakeServer:
    state = "running"
    spec = SimpleNamespace(uuid="s1")

    def __init__(self) -> None:
        self.console = SimpleNamespace(recent=lambda: ["line"])
        self.tasks: set[asyncio.Task[None]] = set()

    async def power(self, action: str) -> None:
        await asyncio.sleep(3600)

    def spawn(self, work: Coroutine[Any, Any, None], *, name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(work, name=name)
        self.tasks.add(task)
        return task

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


def others() -> set[asyncio.Task[Any]]:
    return asyncio.all_tasks() - {asyncio.current_task()}


async def test_sending_frames_ends_with_no_helper_task_left() -> None:
    viewer = ConsoleViewer(16)
    ws = FakeSocket([])
    sender = asyncio.create_task(send_frames(cast(Any, ws), viewer))
    viewer.offer("one")
    await asyncio.sleep(0.01)
    assert ws.sent == ["one"]
    sender.cancel()  # the socket's reader ended first: the sender is cancelled mid-wait
    await asyncio.gather(sender, return_exceptions=True)
    assert others() == set()

    closing = asyncio.create_task(send_frames(cast(Any, ws := FakeSocket([])), viewer))
    viewer.close(1001, "agent shutting down")
    await closing
    assert (ws.close_code, others()) == (1001, set())


async def test_a_closing_console_cancels_its_reads_and_leaves_power_to_the_server() -> None:
    stats_asked = 0

    async def stats() -> Any:
        nonlocal stats_asked
        stats_asked += 1
        await asyncio.sleep(3600)

    inbound = ['{"event":"send stats","args":[]}', '{"event":"set state","args":["stop"]}']
    server = FakeServer()
    session = ConsoleSession(
        cast(Any, server), ConsoleViewer(16), cast(Any, FakeLease()), ConsoleLimits(), stats
    )
    await session.run(cast(Any, FakeSocket(inbound)), [])
    # The stats read ended with the socket; the power action is the server's now.
    assert others() == server.tasks
    assert [task.get_name() for task in server.tasks] == ["console-stop-s1"]
    await server.close()
    gc.collect()  # a coroutine never awaited is reported now, and fails the test
    assert others() == set()
