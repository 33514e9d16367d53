"""The agent keeps its audit-worthy events for a follower that resumes (node_agent/events.py)."""

from __future__ import annotations

import uuid

from node_agent.events import NodeEventBus
from shared.node_api import (
    CrashEvent,
    NodeEvent,
    SftpLoginEvent,
    StateEvent,
    StatsEvent,
    StreamStart,
)

SERVER = uuid.uuid4()


def crash() -> CrashEvent:
    return CrashEvent(server=SERVER, exit_code=1, oom_killed=False, restarting=False, reason="x")


def login() -> SftpLoginEvent:
    return SftpLoginEvent(
        server=SERVER, user=uuid.uuid4(), success=False, method="password", address="192.0.2.1"
    )


def stats() -> StatsEvent:
    return StatsEvent(
        server=SERVER,
        sampled_at=0.0,
        cpu_percent=0.0,
        memory_bytes=0,
        network_rx_bytes=0,
        network_tx_bytes=0,
    )


def queued(bus: NodeEventBus, after: str | None) -> tuple[StreamStart, list[NodeEvent]]:
    subscription = bus.subscribe(after)
    events = []
    while not subscription._queue.empty():
        events.append(subscription._queue.get_nowait())
    return subscription.start, events


def test_a_follower_resuming_gets_the_audit_worthy_events_it_missed_numbered() -> None:
    bus = NodeEventBus()
    for event in (StateEvent(server=SERVER, state="running"), crash(), stats(), login()):
        bus.publish(event)
    start, events = queued(bus, f"{bus.epoch}:0")
    assert start == StreamStart(epoch=bus.epoch, seq=4)
    assert [(e.type, getattr(e, "seq", None)) for e in events] == [("crash", 2), ("sftp_login", 4)]
    # After the crash: only what came after it; after everything, or new: nothing.
    assert [e.type for e in queued(bus, f"{bus.epoch}:2")[1]] == ["sftp_login"]
    assert queued(bus, f"{bus.epoch}:4")[1] == []
    assert queued(bus, None)[1] == []  # not a follower that resumes
    # Another start of the agent (or a follower that applied nothing yet): everything kept
    # came after what it applied.
    assert [e.type for e in queued(bus, f"{'0' * 16}:99")[1]] == ["crash", "sftp_login"]


def test_live_events_are_numbered_too_and_the_backlog_is_bounded() -> None:
    bus = NodeEventBus(queue_events=16, backlog_events=5)
    live = bus.subscribe()
    for _ in range(10):
        bus.publish(crash())
    numbers = [live._queue.get_nowait().seq for _ in range(10)]  # type: ignore[union-attr]
    assert numbers == list(range(1, 11))
    _, kept = queued(bus, f"{bus.epoch}:0")
    assert [e.seq for e in kept] == [6, 7, 8, 9, 10]  # type: ignore[union-attr]
