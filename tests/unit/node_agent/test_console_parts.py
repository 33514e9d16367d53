"""The small pure parts behind consoles, stats and events."""

from __future__ import annotations

import asyncio
import uuid

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
