"""Crashes and their restarts, seen on the node's event stream of a real agent.

A game that exits without being asked is ``crashed`` and restarted once; a second crash
within the crash-loop window leaves it ``crashed``; a stop or kill by the user never brings
it back.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest

from tests.integration.node_agent.live_agent import (
    LiveClient,
    LiveServers,
    eventually,
    node_state,
    read_body,
)

pytestmark = [pytest.mark.docker, pytest.mark.timeout(120)]


async def test_game_above_its_memory_limit_crashes_and_is_restarted_once(
    servers: LiveServers, api: LiveClient
) -> None:
    server_id = await servers.started(memory_mib=32, swap_mib=0)
    first_start = (await read_body(api, server_id))["container"]["started_at"]

    async with api.node_events() as events:
        assert (await api.command(server_id, "oom")).status == 204
        crash = await events.wait_for(lambda e: e["type"] == "crash")
        await events.wait_for(node_state(server_id, "crashed"))
        await events.wait_for(node_state(server_id, "running"))

    assert crash["server"] == str(server_id)
    assert (crash["oom_killed"], crash["restarting"]) == (True, True)
    assert crash["exit_code"] == 137
    body = await read_body(api, server_id)
    assert body["state"] == "running"
    assert body["container"]["running"] is True
    assert body["container"]["started_at"] != first_start


async def test_second_crash_within_the_window_leaves_the_server_crashed(
    servers: LiveServers, api: LiveClient
) -> None:
    server_id = await servers.started()

    async with api.node_events() as events:
        assert (await api.command(server_id, "crash")).status == 204
        first = await events.wait_for(lambda e: e["type"] == "crash")
        await events.wait_for(node_state(server_id, "running"))
        await eventually(lambda: _accepts_commands(api, server_id))
        assert (await api.command(server_id, "crash")).status == 204
        second = await events.wait_for(lambda e: e["type"] == "crash" and e is not first)

    assert (first["exit_code"], first["restarting"]) == (1, True)
    assert (second["exit_code"], second["restarting"]) == (1, False)
    assert "not restarted" in second["reason"]
    await asyncio.sleep(1)
    body = await read_body(api, server_id)
    assert (body["state"], body["desired_power"]) == ("crashed", "stopped")
    assert body["container"]["running"] is False
    assert (await api.power(server_id, "start")).body["state"] == "running"


async def _accepts_commands(api: LiveClient, server_id: uuid.UUID) -> bool:
    lines = (await api.logs(server_id, 5)).body["lines"]
    return bool(lines) and lines[-1].startswith("fake-game started")


async def test_user_stop_and_kill_never_restart_the_game(
    servers: LiveServers, api: LiveClient
) -> None:
    server_id = await servers.started()

    async with api.node_events() as events:
        assert (await api.power(server_id, "kill")).status == 200
        await events.wait_for(node_state(server_id, "offline"))
        assert (await api.power(server_id, "start")).status == 200
        await events.wait_for(node_state(server_id, "running"))
        assert (await api.power(server_id, "stop")).status == 202
        await events.wait_for(node_state(server_id, "stopping"))
        offline = node_state(server_id, "offline")
        await eventually(lambda: _true(sum(map(offline, events.received)) == 2))
        await asyncio.sleep(1.5)

    assert not [e for e in events.received if e["type"] == "crash"]
    body = await read_body(api, server_id)
    assert (body["state"], body["desired_power"]) == ("offline", "stopped")
    assert body["container"]["running"] is False


async def _true(value: bool) -> bool:
    return value


async def test_a_start_right_after_a_kill_is_never_taken_for_a_crash(
    servers: LiveServers, api: LiveClient
) -> None:
    """The killed run's exit may reach the agent (Docker's die event) after the next start
    has begun: that exit was asked for, whoever looks at it later."""
    server_id = await servers.started()
    async with api.node_events() as events:
        for _ in range(KILL_START_ROUNDS):
            assert (await api.power(server_id, "kill")).status == 200
            assert (await api.power(server_id, "start")).status == 200
        await events.wait_for(node_state(server_id, "running"))
        await asyncio.sleep(2)
    assert not [e for e in events.received if e["type"] == "crash"]
    body = await read_body(api, server_id)
    assert (body["state"], body["desired_power"]) == ("running", "running")
    assert body["container"]["running"] is True


KILL_START_ROUNDS = 10
