"""A server's state has one writer: each change is one event and one console status line.

Built from the agent's real parts (event bus, console, record store, volume); nothing here
reaches Docker, so its client points at a socket that does not exist.
"""

from __future__ import annotations

import ast
import asyncio
import datetime as dt
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import aiodocker
import pytest

from node_agent.console.limits import ConsoleLimits
from node_agent.console.server_console import ConsoleViewer, ServerConsole
from node_agent.docker.containers import ContainerRuntime
from node_agent.docker.hardening import game_container_name
from node_agent.docker.network import AgentNetwork
from node_agent.docker.output import OutputLine
from node_agent.events import EventSubscription, NodeEventBus
from node_agent.servers import done
from node_agent.servers.records import RecordStore, ServerRecord
from node_agent.servers.server import ManagedServer, ServerServices
from node_agent.servers.state import ServerStateMachine
from node_agent.storage.directory import DirectoryVolume
from shared.errors import NotFound
from shared.node_api import StateEvent
from shared.server_spec import ServerSpec, ServerState
from tests.support.factories import server_spec

AGENT_PACKAGE = Path(__file__).resolve().parents[3] / "node_agent"
STATE_MODULE = AGENT_PACKAGE / "servers" / "state.py"


async def _no_network() -> AgentNetwork:
    raise AssertionError("no network is needed to change a state")


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[ManagedServer]:
    async with aiodocker.Docker(url=f"unix://{tmp_path}/no-docker.sock") as docker:
        runtime = ContainerRuntime(docker)
        spec = ServerSpec.model_validate(server_spec())
        services = ServerServices(
            runtime=runtime,
            records=RecordStore(tmp_path),
            events=NodeEventBus(),
            network=_no_network,
            crash_loop_window=60.0,
        )
        console = ServerConsole(spec.uuid, game_container_name(spec.uuid), runtime, ConsoleLimits())
        volume = DirectoryVolume(tmp_path, spec.uuid, os.getuid(), os.getgid())
        managed = ManagedServer(ServerRecord(spec=spec), volume, console, services)
        try:
            yield managed
        finally:
            await managed.close()


async def _drain_events(subscription: EventSubscription) -> list[StateEvent]:
    events: list[StateEvent] = []
    while True:
        try:
            event = await asyncio.wait_for(subscription.next(), 0.05)
        except TimeoutError:
            return events
        assert isinstance(event, StateEvent)
        events.append(event)


async def _drain_statuses(viewer: ConsoleViewer) -> list[str]:
    statuses: list[str] = []
    while True:
        try:
            frame = await asyncio.wait_for(viewer.next_frame(), 0.05)
        except TimeoutError:
            return statuses
        assert frame is not None
        message = json.loads(frame)
        assert message["event"] == "status"
        statuses.append(message["args"][0])


async def test_each_state_change_is_one_event_and_one_console_status_line(
    server: ManagedServer,
) -> None:
    subscription = server.services.events.subscribe()
    viewer = server.console.add_viewer()
    asked: list[ServerState] = [
        "offline",
        "installing",
        "installing",
        "offline",
        "starting",
        "running",
        "running",
        "stopping",
        "offline",
        "crashed",
        "crashed",
        "starting",
    ]
    for state in asked:
        server.set_state(state)

    changes = [
        "installing",
        "offline",
        "starting",
        "running",
        "stopping",
        "offline",
        "crashed",
        "starting",
    ]
    events = await _drain_events(subscription)
    assert [event.state for event in events] == changes
    assert {event.server for event in events} == {server.spec.uuid}
    assert await _drain_statuses(viewer) == changes
    assert server.services.events.published == len(changes)
    assert server.state == "starting"


async def test_a_servers_state_cannot_be_assigned(server: ManagedServer) -> None:
    subscription = server.services.events.subscribe()

    with pytest.raises(AttributeError):
        server.state = "running"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        setattr(server, "state", "running")  # noqa: B010
    machine = ServerStateMachine(server.spec.uuid, server.services.events, server.console)
    with pytest.raises(AttributeError):
        machine.state = "running"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        machine.current = "running"  # type: ignore[attr-defined]
    with pytest.raises(TypeError):
        ManagedServer(  # type: ignore[call-arg]
            server.record, server.volume, server.console, server.services, state="running"
        )

    assert (server.state, machine.state) == ("offline", "offline")
    assert await _drain_events(subscription) == []


WRITTEN_NAMES = {"state", "_current"}


def _state_writes(path: Path) -> list[int]:
    """Lines of ``path`` that assign an attribute named ``state`` or ``_current`` (also by
    ``setattr`` with that name). A property without a setter refuses the rest at run time
    (test above)."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = [
                element
                for target in node.targets
                for element in (target.elts if isinstance(target, ast.Tuple) else [target])
            ]
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "setattr":
            name = node.args[1] if len(node.args) > 1 else None
            if isinstance(name, ast.Constant) and name.value in WRITTEN_NAMES:
                lines.append(node.lineno)
        lines.extend(
            target.lineno
            for target in targets
            if isinstance(target, ast.Attribute) and target.attr in WRITTEN_NAMES
        )
    return lines


def test_no_module_of_the_agent_writes_a_state_but_the_state_machine() -> None:
    writes = {
        str(path.relative_to(AGENT_PACKAGE)): _state_writes(path)
        for path in sorted(AGENT_PACKAGE.rglob("*.py"))
        if path != STATE_MODULE
    }
    assert {path: lines for path, lines in writes.items() if lines} == {}
    # The machine itself writes its slot in two places: the start, and change().
    assert len(_state_writes(STATE_MODULE)) == 2


# --- done markers (node_agent/servers/done.py) -------------------------------------------------

ARMED_AT = 1_800_000_000.0


def logged(seconds_after_arming: float, text: str) -> OutputLine:
    """A line as dockerd logs it, ``seconds_after_arming`` after the watch was armed."""
    moment = dt.datetime.fromtimestamp(ARMED_AT + seconds_after_arming, tz=dt.UTC)
    return OutputLine(moment.strftime("%Y-%m-%dT%H:%M:%S.%f000Z"), text)


async def test_only_a_done_line_of_this_run_makes_a_starting_server_running(
    server: ManagedServer,
) -> None:
    subscription = server.services.events.subscribe()
    server.set_state("starting")
    assert server.done_watch.arm(("Done", "regex:^Ready in \\d+s$"), now=ARMED_AT)

    lines = [
        # The previous run's done line, still being read when this start began.
        logged(-0.001, "Done"),
        logged(0.5, "Loading world"),
        logged(0.6, "Ready in soon"),
        logged(0.7, "Ready in 12s"),
        logged(0.8, "Done"),
    ]
    states = []
    for line in lines:
        done.line_printed(server, line)
        states.append(server.state)

    assert states == ["starting", "starting", "starting", "running", "running"]

    assert [event.state for event in await _drain_events(subscription)] == [
        "starting",
        "running",
    ]
    assert not server.done_watch.waiting


async def test_leaving_starting_ends_the_wait_for_the_done_line(server: ManagedServer) -> None:
    for leaving in ("stopping", "crashed", "offline"):
        server.set_state("starting")
        server.done_watch.arm(("Done",), now=ARMED_AT)
        server.set_state(leaving)
        assert not server.done_watch.waiting
        # A start without markers (or not yet armed) is not made running by a line.
        server.set_state("starting")
        done.line_printed(server, logged(1, "Done"))
        assert server.state == "starting"


async def test_a_done_line_outside_starting_changes_nothing(server: ManagedServer) -> None:
    server.done_watch.arm(("Done",), now=ARMED_AT)
    done.line_printed(server, logged(1, "Done"))
    assert server.state == "offline"


def test_a_spec_without_markers_does_not_arm_the_watch() -> None:
    watch = done.DoneWatch()

    assert watch.arm(()) is False
    assert not watch.waiting
    assert watch.marker_in(logged(1, "Done")) is None
    assert watch.arm(("Done",), now=ARMED_AT) is True
    assert watch.marker_in(logged(1, "it is Done.")) == "Done"
    assert watch.marker_in(OutputLine("not a timestamp", "Done")) is None


class ManualClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_search_budget_refuses_once_spent_until_the_next_window() -> None:
    clock = ManualClock()
    budget = done.SearchBudget(per_window=0.05, window=1.0, clock=clock)

    assert budget.allows()
    budget.spend(0.03)
    assert budget.allows()
    budget.spend(0.03)
    assert not budget.allows()
    clock.now = 0.99
    assert not budget.allows()
    clock.now = 1.0
    assert budget.allows()


def test_over_its_budget_a_watch_still_finds_text_markers_and_counts_skipped_lines() -> None:
    spent = done.SearchBudget(per_window=0.0, clock=ManualClock())
    watch = done.DoneWatch("server", budget=spent)
    watch.arm(("Done", "regex:^Ready in \\d+s$"), now=ARMED_AT)

    assert watch.marker_in(logged(1, "Ready in 12s")) is None
    assert watch.marker_in(logged(2, "Ready in 13s")) is None
    assert watch.skipped == 2
    assert watch.marker_in(logged(3, "Done")) == "Done"
    watch.arm(("regex:^Ready in \\d+s$",), now=ARMED_AT)
    assert watch.skipped == 0
    # Within its budget, the expression is searched.
    assert done.DoneWatch("server").marker_in(logged(1, "Ready in 1s")) is None
    roomy = done.DoneWatch("server")
    roomy.arm(("regex:^Ready in \\d+s$",), now=ARMED_AT)
    assert roomy.marker_in(logged(1, "Ready in 1s")) == "regex:^Ready in \\d+s$"


async def test_work_that_outlived_the_servers_deletion_is_refused_and_writes_no_record(
    server: ManagedServer,
) -> None:
    """What waited for the lock, or ran on, while the server was deleted (a start queued
    behind the deletion, an installer spawned just before it) gets 404 and must not write
    the record back: after a restart the agent would load a server with no volume."""
    records = server.services.records
    await server.want("running")
    assert records.path(server.spec.uuid).exists()
    # What ServerRegistry.delete does last, under the lock.
    await server.remove_record()

    with pytest.raises(NotFound, match="no such server on this node"):
        async with server.locked():
            raise AssertionError("the block must not run")
    assert not server.lock.locked()
    with pytest.raises(NotFound):
        await server.want("stopped")
    assert not records.path(server.spec.uuid).exists()


async def test_a_record_write_in_progress_when_the_server_is_deleted_does_not_outlive_it(
    server: ManagedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kill or stop writes the record without the server's lock (it must not wait for a
    start). Its write, begun just before the deletion removed the file, used to land after
    it: the agent's next start loaded a server with no volume."""
    records = server.services.records
    await server.want("running")
    real_save = records.save
    writing, finish = asyncio.Event(), asyncio.Event()

    async def slow_save(record: ServerRecord) -> None:
        writing.set()
        await finish.wait()
        await real_save(record)

    monkeypatch.setattr(records, "save", slow_save)
    kill = asyncio.create_task(server.want("stopped"))
    await writing.wait()
    removal = asyncio.create_task(server.remove_record())
    await asyncio.sleep(0.05)  # the removal comes while the write is in progress
    finish.set()
    await asyncio.gather(kill, removal)

    assert server.deleted
    assert not records.path(server.spec.uuid).exists()
    assert await records.load_all() == []
    with pytest.raises(NotFound):
        await server.want("running")
    assert not records.path(server.spec.uuid).exists()
