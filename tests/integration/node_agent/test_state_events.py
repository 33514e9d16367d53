"""Every state change of a server is exactly one state event, on a real agent with a real game.

One server goes through create (its installer waits for a file the test writes) → start →
stop → start → kill → start → crash (the fake game's ``crash``) → the restart the crash
policy makes. The node's event stream, a console on the server and the status route watch
it: after each step the state events are the changes so far, each once and in order, and the
status route reports the last of them; everything the status route reported on the way
(read every 50 ms) is among the events, in the same order; and the console's status lines
are the same changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator

import pytest

from tests.integration.node_agent.live_agent import (
    Frames,
    LiveAgent,
    LiveClient,
    LiveServers,
    read_body,
)
from tests.support.containers import FAKE_GAME_IMAGE

pytestmark = [pytest.mark.docker, pytest.mark.timeout(240)]
INSTALLER_WAITS = "while [ ! -e /home/container/release ]; do sleep 0.1; done"
# Socket tokens live at most 60 s: on a busy host the sockets are renewed before that.
RENEW_SECONDS = 20.0
POWER_CYCLE = ["starting", "running", "stopping", "offline"]
CRASH_AND_RESTART = ["crashed", "starting", "running"]


def state_events(events: Frames, server_id: uuid.UUID) -> list[str]:
    mine = [e for e in events.received if e.get("server") == str(server_id)]
    return [e["state"] for e in mine if e["type"] == "state"]


def console_statuses(console: Frames) -> list[str]:
    return [f["args"][0] for f in console.received if f.get("event") == "status"]


def is_subsequence(part: list[str], whole: list[str]) -> bool:
    rest = iter(whole)
    return all(item in rest for item in part)


async def events_reach(events: Frames, server_id: uuid.UUID, expected: list[str]) -> None:
    """Wait until as many state events as expected arrived; then they must be those."""
    deadline = time.monotonic() + 30
    while len(state_events(events, server_id)) < len(expected) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert state_events(events, server_id) == expected


class StatusReader:
    """Reads the status route every 50 ms; keeps each state that differs from the last."""

    def __init__(self, api: LiveClient, server_id: uuid.UUID) -> None:
        self._api = api
        self._server_id = server_id
        self.reported: list[str] = []
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        while True:
            state = (await read_body(self._api, self._server_id))["state"]
            if not self.reported or state != self.reported[-1]:
                self.reported.append(state)
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        """Stop reading (a failed read fails the test here)."""
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


@contextlib.asynccontextmanager
async def renewed(
    api: LiveClient, server_id: uuid.UUID, events: Frames, console: Frames
) -> AsyncIterator[None]:
    """Send both sockets a fresh token every ``RENEW_SECONDS``."""
    console_path = f"/api/v1/servers/{server_id}/console"

    async def renew() -> None:
        while True:
            await asyncio.sleep(RENEW_SECONDS)
            await events.send("auth", api.token("/api/v1/events", "node.events", "node"))
            token = api.token(console_path, "server.console", f"server:{server_id}")
            await console.send("auth", token)

    task = asyncio.create_task(renew())
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def release_installer(agent: LiveAgent, server_id: uuid.UUID) -> None:
    for path in agent.data_dir.rglob(str(server_id)):
        if path.is_dir():
            (path / "release").touch()


async def game_reads_commands(console: Frames, after: int) -> None:
    """Wait for the game's first line in a console frame numbered ``after`` or later."""
    deadline = time.monotonic() + 30
    while not any(
        f.get("event") == "console output" and f["args"][0].startswith("fake-game started")
        for f in console.received[after:]
    ):
        assert time.monotonic() < deadline, f"the game did not start: {console.received[-10:]}"
        await asyncio.sleep(0.05)


async def test_every_state_change_emits_exactly_one_state_event(
    servers: LiveServers, api: LiveClient, live_agent: LiveAgent
) -> None:
    async with api.node_events() as events:
        server_id = await servers.create(
            install={"image": FAKE_GAME_IMAGE, "script": INSTALLER_WAITS}
        )
        await events_reach(events, server_id, ["installing"])
        reader = StatusReader(api, server_id)
        try:
            async with (
                api.console(server_id) as console,
                renewed(api, server_id, events, console),
            ):
                expected = await step_through_the_lifecycle(
                    api, live_agent, server_id, events, console
                )
                # Anything late (an exit judged twice, a second restart) would show now.
                await asyncio.sleep(2)
        finally:
            await reader.close()

    assert expected == [
        "installing",
        "offline",
        *POWER_CYCLE,
        *POWER_CYCLE,
        "starting",
        "running",
        *CRASH_AND_RESTART,
    ]
    assert state_events(events, server_id) == expected
    # Connected while installing: "installing" (the state then), then each change.
    assert console_statuses(console) == expected
    crashes = [e for e in events.received if e.get("type") == "crash"]
    assert [(c["server"], c["exit_code"], c["restarting"]) for c in crashes] == [
        (str(server_id), 1, True)
    ]
    assert is_subsequence(reader.reported, expected), reader.reported
    assert reader.reported[-1] == "running"


async def step_through_the_lifecycle(
    api: LiveClient,
    agent: LiveAgent,
    server_id: uuid.UUID,
    events: Frames,
    console: Frames,
) -> list[str]:
    """Each step, then its state events and the status route's answer checked; the changes."""
    expected = ["installing"]

    async def then(*changes: str) -> None:
        expected.extend(changes)
        await events_reach(events, server_id, expected)
        assert (await read_body(api, server_id))["state"] == expected[-1]

    await console.wait_for(lambda f: f.get("event") == "status")
    release_installer(agent, server_id)
    await then("offline")
    await events.wait_for(lambda e: e.get("type") == "install" and e["success"] is True)

    answer = await api.power(server_id, "start")
    assert (answer.status, answer.body["state"]) == (200, "running")
    await then("starting", "running")

    assert (await api.power(server_id, "stop")).status == 202
    await then("stopping", "offline")

    assert (await api.power(server_id, "start")).status == 200
    await then("starting", "running")

    answer = await api.power(server_id, "kill")
    assert (answer.status, answer.body["state"]) == (200, "offline")
    await then("stopping", "offline")

    frames_before_start = len(console.received)
    assert (await api.power(server_id, "start")).status == 200
    await then("starting", "running")
    await game_reads_commands(console, after=frames_before_start)

    assert (await api.command(server_id, "crash")).status == 204
    await then(*CRASH_AND_RESTART)
    return expected
