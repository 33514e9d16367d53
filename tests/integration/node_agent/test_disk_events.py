"""The server code's side of disk limits: over-limit games stopped, limits changed and kept.

These agents use the ``directory`` backend (no root needed), whose usage is polled every half
second here: a game that writes past its limit is stopped by the agent within a few polls and
the control plane hears ``disk_full`` on ``/api/v1/events``. A new limit set with
``PATCH .../disk`` lands in the server's record, so ``GET /api/v1/servers/{id}`` shows it,
also after the agent restarts; a refused one changes nothing.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any, Final

import pytest

from tests.integration.node_agent.live_agent import (
    LiveAgent,
    LiveClient,
    LiveServers,
    eventually,
    node_state,
    read_body,
)
from tests.support.containers import Answer

MIB: Final = 1024 * 1024
POLL_SECONDS: Final = 0.5
# Each test has an agent of its own (some restart it), on the directory backend, polled.
pytestmark = [
    pytest.mark.docker,
    pytest.mark.own_agent(storage_backend="directory", storage_poll_seconds=POLL_SECONDS),
    pytest.mark.timeout(120),
]


def disk_full(server_id: uuid.UUID) -> Any:
    return lambda e: e.get("type") == "disk_full" and e["server"] == str(server_id)


async def resize(api: LiveClient, server_id: uuid.UUID, disk_mib: int) -> Answer:
    body = LiveClient.encode({"disk_mib": disk_mib})
    return await api.send("PATCH", server_id, "server.disk", suffix="/disk", body=body)


async def test_game_past_its_polled_limit_is_stopped_and_disk_full_is_reported(
    servers: LiveServers, api: LiveClient
) -> None:
    async with api.node_events() as events:
        server_id = await servers.started(disk_mib=64)

        assert (await api.command(server_id, "bigfile 80")).status == 204
        full = await events.wait_for(disk_full(server_id), timeout=10 * POLL_SECONDS + 10)
        await events.wait_for(node_state(server_id, "offline"), timeout=15)

    body = await read_body(api, server_id)
    assert full["limit_bytes"] == 64 * MIB
    assert full["used_bytes"] > 64 * MIB
    assert body["state"] == "offline"
    assert body["desired_power"] == "stopped"
    assert body["container"]["running"] is False
    assert [e for e in events.received if e.get("type") == "crash"] == []
    assert len([e for e in events.received if disk_full(server_id)(e)]) == 1


async def test_game_within_its_limit_keeps_running(servers: LiveServers, api: LiveClient) -> None:
    server_id = await servers.started(disk_mib=128)
    async with api.node_events() as events:
        assert (await api.command(server_id, "bigfile 40")).status == 204
        await eventually(
            lambda: _held_at_least(servers.agent.data_dir / "volumes" / str(server_id), 40)
        )
        await _sleep_polls(4)

    assert (await read_body(api, server_id))["state"] == "running"
    assert not [e for e in events.received if disk_full(server_id)(e)]


async def test_a_new_disk_limit_shows_on_the_server_and_survives_a_restart(
    servers: LiveServers, api: LiveClient, live_agent: LiveAgent
) -> None:
    server_id = await servers.started(disk_mib=256)
    assert (await api.command(server_id, "bigfile 100")).status == 204
    await eventually(lambda: _held_at_least(live_agent.data_dir / "volumes" / str(server_id), 100))

    refused = await resize(api, server_id, 64)
    after_refusal = (await read_body(api, server_id))["disk_mib"]
    raised = await resize(api, server_id, 512)
    after_raise = (await read_body(api, server_id))["disk_mib"]
    live_agent.stop()
    live_agent.start()

    assert refused.status == 409, refused.body
    assert after_refusal == 256
    assert raised.status == 200, raised.body
    assert raised.body["total_bytes"] == 512 * MIB
    assert after_raise == 512
    assert (await read_body(api, server_id))["disk_mib"] == 512
    assert (await resize(api, uuid.uuid4(), 512)).status == 404


async def _held_at_least(directory: Path, mib: int) -> bool:
    return sum(f.stat().st_size for f in directory.iterdir() if f.is_file()) >= mib * MIB


async def _sleep_polls(polls: int) -> None:
    await asyncio.sleep(polls * POLL_SECONDS)
