"""Knowing when a game is up, on a real agent with real games: ``starting`` until the game's
console prints a done marker (``startup_done``), then ``running``; without markers, running
as soon as the container runs.

The fake game prints its first line at once and ``say TEXT`` prints TEXT when the test
wants, so a test can hold a server in ``starting`` as long as it likes. Each test watches
the node's event stream: the state events of its server are exactly the changes expected,
each once and in order.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest

from tests.integration.node_agent.live_agent import (
    Frames,
    LiveAgent,
    LiveClient,
    LiveServers,
    eventually,
    read_body,
)
from tests.support.containers import BUSYBOX_IMAGE

pytestmark = [pytest.mark.docker, pytest.mark.timeout(180)]
READY = "Server is ready"
# How long a server is watched to stay as it is (the game's lines arrive within milliseconds).
HOLD_SECONDS = 1.5


def state_events(events: Frames, server_id: uuid.UUID) -> list[str]:
    return [
        e["state"]
        for e in events.received
        if e.get("type") == "state" and e.get("server") == str(server_id)
    ]


async def events_are(events: Frames, server_id: uuid.UUID, expected: list[str]) -> None:
    """Wait until as many state events as expected arrived; then they must be those."""
    deadline = time.monotonic() + 30
    while len(state_events(events, server_id)) < len(expected) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert state_events(events, server_id) == expected


async def logged(api: LiveClient, server_id: uuid.UUID, text: str) -> list[str]:
    """Wait until the console's recent lines include one containing ``text``."""

    async def lines() -> list[str]:
        found: list[str] = (await api.logs(server_id)).body["lines"]
        return found if any(text in line for line in found) else []

    result: list[str] = await eventually(lines, timeout=20)
    return result


async def stays(api: LiveClient, server_id: uuid.UUID, state: str) -> None:
    """The server is in ``state`` now and still after :data:`HOLD_SECONDS`."""
    assert (await read_body(api, server_id))["state"] == state
    await asyncio.sleep(HOLD_SECONDS)
    assert (await read_body(api, server_id))["state"] == state


async def start(api: LiveClient, server_id: uuid.UUID) -> dict[str, Any]:
    answer = await api.power(server_id, "start")
    assert answer.status == 200, answer.body
    body: dict[str, Any] = answer.body
    return body


async def test_a_game_stays_starting_until_it_prints_its_done_line(
    servers: LiveServers, api: LiveClient
) -> None:
    async with api.node_events() as events:
        server_id = await servers.create(startup_done=[READY, "World loaded in 0 ms"])
        body = await start(api, server_id)
        assert (body["state"], body["container"]["running"]) == ("starting", True)

        # The game is up and talking, but has not said the words yet.
        await logged(api, server_id, "fake-game started")
        assert (await api.command(server_id, "say Server is loading")).status == 204
        await logged(api, server_id, "Server is loading")
        await stays(api, server_id, "starting")

        assert (await api.command(server_id, f"say [12:00:00] {READY}.")).status == 204
        await events_are(events, server_id, ["starting", "running"])
        assert (await read_body(api, server_id))["state"] == "running"

        # A second done line (or a second start) changes nothing.
        assert (await api.command(server_id, f"say {READY}")).status == 204
        assert (await start(api, server_id))["state"] == "running"
        await logged(api, server_id, f"{READY}")
        await asyncio.sleep(0.5)
        assert state_events(events, server_id) == ["starting", "running"]


async def test_a_regex_marker_matches_the_done_line_only(
    servers: LiveServers, api: LiveClient
) -> None:
    marker = r'regex:^Done \([0-9.]+s\)! For help, type "help"$'
    async with api.node_events() as events:
        server_id = await servers.create(startup_done=[marker])
        assert (await start(api, server_id))["state"] == "starting"

        for near_miss in (
            'Done (soon)! For help, type "help"',
            'Done (3.2s)! For help, type "help" or not',
            '[INFO] Done (3.2s)! For help, type "help"',
        ):
            assert (await api.command(server_id, f"say {near_miss}")).status == 204
        await logged(api, server_id, "[INFO] Done")
        await stays(api, server_id, "starting")

        command = 'say Done (12.345s)! For help, type "help"'
        assert (await api.command(server_id, command)).status == 204
        await events_are(events, server_id, ["starting", "running"])


async def test_without_markers_a_game_runs_as_soon_as_its_container_does(
    servers: LiveServers, api: LiveClient
) -> None:
    async with api.node_events() as events:
        server_id = await servers.create()
        body = await start(api, server_id)
        assert (body["state"], body["container"]["running"]) == ("running", True)
        await events_are(events, server_id, ["starting", "running"])


async def test_a_marker_matches_whole_lines_however_the_output_is_cut(
    servers: LiveServers, api: LiveClient
) -> None:
    # First the words on two lines (no match), then on one line written in two pieces.
    script = (
        "printf 'Server is\\nready\\n'; sleep 1.5; "
        "printf 'Server is '; sleep 1; printf 'ready!\\n'; "
        "exec sleep 600"
    )
    async with api.node_events() as events:
        server_id = await _busybox_server(servers, script, READY)
        assert (await start(api, server_id))["state"] == "starting"
        lines = await logged(api, server_id, "ready")
        assert lines[-2:] == ["Server is", "ready"]
        assert (await read_body(api, server_id))["state"] == "starting"

        await events_are(events, server_id, ["starting", "running"])
        assert (await logged(api, server_id, "ready!"))[-1] == "Server is ready!"


async def test_long_and_binary_lines_are_searched_in_their_first_4096_characters(
    servers: LiveServers, api: LiveClient
) -> None:
    # Lines of 20 KB (dockerd logs them in 16 KiB pieces, the console joins them and cuts
    # them at 4096 characters): the marker 5000 characters in is not seen; one after bytes
    # that are not UTF-8 (the log driver makes them U+FFFD) and a control character is.
    script = (
        "x=$(head -c 5000 /dev/zero | tr '\\0' x); y=$(head -c 15000 /dev/zero | tr '\\0' y); "
        f'printf \'%s{READY}%s\\n\' "$x" "$y"; sleep 1.5; '
        f'printf \'\\377\\376\\001 {READY}%s%s\\n\' "$x" "$y"; exec sleep 600'
    )
    async with api.node_events() as events:
        server_id = await _busybox_server(servers, script, READY)
        assert (await start(api, server_id))["state"] == "starting"
        first = (await logged(api, server_id, "xxxx"))[-1]
        assert first == "x" * 4096
        assert (await read_body(api, server_id))["state"] == "starting"

        await events_are(events, server_id, ["starting", "running"])
        second = (await logged(api, server_id, READY))[-1]
        prefix = f"\ufffd\ufffd\x01 {READY}"
        assert second == prefix + "x" * (4096 - len(prefix))


async def test_a_done_line_lost_to_the_console_throttle_still_counts(
    servers: LiveServers, api: LiveClient
) -> None:
    # 1000 lines at once: the console passes 50 a second (live agent's limit) and drops the
    # rest, the done line among them; the done watch sees every line before the throttle.
    script = (
        'i=0; while [ $i -lt 1000 ]; do echo "loading chunk $i"; i=$((i+1)); done; '
        f"echo '{READY}'; exec sleep 600"
    )
    async with api.node_events() as events:
        server_id = await _busybox_server(servers, script, READY)
        await start(api, server_id)
        await events_are(events, server_id, ["starting", "running"])

    lines = await logged(api, server_id, "output throttled")
    assert READY not in lines


async def test_a_restart_while_starting_waits_for_the_new_runs_done_line(
    servers: LiveServers, api: LiveClient
) -> None:
    async with api.node_events() as events:
        server_id = await servers.create(startup_done=[READY])
        assert (await start(api, server_id))["state"] == "starting"
        await logged(api, server_id, "fake-game started")

        assert (await api.power(server_id, "restart")).status == 202
        await events_are(events, server_id, ["starting", "stopping", "offline", "starting"])
        await stays(api, server_id, "starting")

        assert (await api.command(server_id, f"say {READY}")).status == 204
        await events_are(
            events, server_id, ["starting", "stopping", "offline", "starting", "running"]
        )


async def test_a_crash_while_starting_is_a_crash_and_the_restart_waits_again(
    servers: LiveServers, api: LiveClient
) -> None:
    async with api.node_events() as events:
        server_id = await servers.create(startup_done=[READY])
        assert (await start(api, server_id))["state"] == "starting"
        await logged(api, server_id, "fake-game started")

        assert (await api.command(server_id, "crash")).status == 204
        await events_are(events, server_id, ["starting", "crashed", "starting"])
        crash = await events.wait_for(lambda e: e.get("type") == "crash")
        assert (crash["exit_code"], crash["restarting"]) == (1, True)
        await stays(api, server_id, "starting")

        assert (await api.command(server_id, f"say {READY}")).status == 204
        await events_are(events, server_id, ["starting", "crashed", "starting", "running"])


async def test_a_stop_while_starting_ends_the_wait(servers: LiveServers, api: LiveClient) -> None:
    async with api.node_events() as events:
        server_id = await servers.create(startup_done=[READY])
        assert (await start(api, server_id))["state"] == "starting"
        await logged(api, server_id, "fake-game started")

        assert (await api.power(server_id, "stop")).status == 202
        await events_are(events, server_id, ["starting", "stopping", "offline"])
        body = await read_body(api, server_id)
        assert (body["state"], body["container"]["running"]) == ("offline", False)


@pytest.mark.own_agent
async def test_an_agent_restart_finds_a_game_with_markers_running(
    live_agent: LiveAgent, servers: LiveServers, api: LiveClient
) -> None:
    up = await servers.create(startup_done=[READY])
    waiting = await servers.create(startup_done=[READY])
    assert (await start(api, up))["state"] == "starting"
    assert (await start(api, waiting))["state"] == "starting"
    assert (await api.command(up, f"say {READY}")).status == 204
    await eventually(lambda: _state_is(api, up, "running"))
    await logged(api, waiting, "fake-game started")

    live_agent.kill()
    live_agent.start()

    # Its done line is behind it: a game that outlived the agent is taken to be up.
    for server_id in (up, waiting):
        body = await read_body(api, server_id)
        assert (body["state"], body["container"]["running"]) == ("running", True)


async def _state_is(api: LiveClient, server_id: uuid.UUID, state: str) -> bool:
    return bool((await read_body(api, server_id))["state"] == state)


# A game that says it is up in its very first instant: whatever the follower has not yet
# opened when the line is logged must still reach the done watch.
INSTANT_SCRIPT = "echo 'Server started'; exec sleep 1000"
# How long an instantly-up game may take to be seen ``running`` (the report: stuck 30 s).
PROMPT_SECONDS = 5.0
RUNS = 10


async def _running_within(api: LiveClient, server_id: uuid.UUID, seconds: float) -> float:
    """Seconds until the server is ``running``; fails after ``seconds``."""
    began = time.monotonic()
    while time.monotonic() - began < seconds:
        if (await read_body(api, server_id))["state"] == "running":
            return time.monotonic() - began
        await asyncio.sleep(0.05)
    raise AssertionError(f"still {(await read_body(api, server_id))['state']} after {seconds} s")


async def _busybox_server(servers: LiveServers, script: str, done: str) -> uuid.UUID:
    """A new busybox server running ``script``, ``running`` once it prints ``done``."""
    return await servers.create(
        image=BUSYBOX_IMAGE,
        startup=["/bin/sh", "-c", script],
        startup_done=[done],
        stop={"type": "signal", "value": "SIGKILL"},
    )


async def _started_fresh(
    servers: LiveServers, api: LiveClient, script: str, done: str
) -> uuid.UUID:
    """A new busybox server running ``script``, started, ``running`` by its done line."""
    server_id = await _busybox_server(servers, script, done)
    await start(api, server_id)
    await _running_within(api, server_id, PROMPT_SECONDS)
    return server_id


async def test_a_done_line_printed_at_once_is_seen_on_every_fresh_start(
    servers: LiveServers, api: LiveClient
) -> None:
    for _ in range(RUNS):
        server_id = await _started_fresh(servers, api, INSTANT_SCRIPT, "regex:^Server started$")
        # Read once: neither lost nor replayed twice by the console.
        assert (await api.logs(server_id)).body["lines"].count("Server started") == 1
        assert (await api.power(server_id, "kill")).status in {200, 202, 204}


async def test_a_done_line_printed_at_once_is_seen_on_every_start_again(
    servers: LiveServers, api: LiveClient
) -> None:
    # The same container started again and again (the console follows on from the last
    # line it saw), by kill + start and by restart.
    server_id = await servers.create(
        image=BUSYBOX_IMAGE,
        startup=["/bin/sh", "-c", INSTANT_SCRIPT],
        startup_done=["Server started"],
        stop={"type": "signal", "value": "SIGKILL"},
    )
    for run in range(RUNS):
        if run % 2 == 0:
            kill = await api.power(server_id, "kill")
            assert kill.status in {200, 202, 204}, kill.body
            await start(api, server_id)
        else:
            assert (await api.power(server_id, "restart")).status == 202
        await _running_within(api, server_id, PROMPT_SECONDS)
    lines = (await api.logs(server_id)).body["lines"]
    assert lines.count("Server started") == RUNS


async def test_a_done_line_printed_before_a_flood_is_seen_on_every_fresh_start(
    servers: LiveServers, api: LiveClient
) -> None:
    # The reported race: the done line, then more lines than the console's buffer holds
    # (live agent: 500), all before the console's log request reaches dockerd. A follower
    # that asked only for the run's tail never saw the done line (5 of 5 starts stuck).
    script = (
        "echo 'Server started'; i=0; "
        'while [ $i -lt 3000 ]; do echo "loading $i"; i=$((i+1)); done; exec sleep 1000'
    )
    for _ in range(RUNS):
        server_id = await _started_fresh(servers, api, script, "Server started")
        assert (await api.power(server_id, "kill")).status in {200, 202, 204}
