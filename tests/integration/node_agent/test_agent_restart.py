"""The agent's state outlives the agent: SIGKILL, a simulated host reboot, strangers.

Each test runs agents of its own (``agent_factory``) with the same data directory across
restarts, and real game containers that must not notice the agent going away.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiodocker
import aiohttp
import pytest

from node_agent.docker.hardening import game_container_name, server_labels
from tests.integration.node_agent.live_agent import (
    LiveAgent,
    LiveClient,
    LiveServers,
    eventually,
    output_line,
    read_body,
    require_docker_and_images,
    start_live_agent,
    status,
)
from tests.support.agent_process import SigningKey
from tests.support.containers import BUSYBOX_IMAGE, remove_container

pytestmark = [pytest.mark.docker, pytest.mark.timeout(120)]


@pytest.fixture(scope="module", autouse=True)
def test_images() -> Iterator[None]:
    yield from require_docker_and_images()


@pytest.fixture
def own_agent(tmp_path: Path, signing_key: SigningKey) -> Iterator[LiveAgent]:
    agent = start_live_agent(tmp_path / "agent", signing_key)
    try:
        yield agent
    finally:
        agent.stop()


@pytest.fixture
async def docker() -> AsyncIterator[aiodocker.Docker]:
    async with aiodocker.Docker() as client:
        yield client


@pytest.fixture
async def api(
    own_agent: LiveAgent, signing_key: SigningKey, http: aiohttp.ClientSession
) -> LiveClient:
    return LiveClient(own_agent, signing_key, http)


@pytest.fixture
async def servers(
    own_agent: LiveAgent, api: LiveClient, docker: aiodocker.Docker
) -> AsyncIterator[LiveServers]:
    handed_out = LiveServers(own_agent, api, docker)
    try:
        yield handed_out
    finally:
        await handed_out.cleanup()


async def inspect(docker: aiodocker.Docker, server_id: uuid.UUID) -> dict[str, Any]:
    info: dict[str, Any] = await docker.containers.container(game_container_name(server_id)).show()
    return info


async def test_agent_sigkill_leaves_games_running_and_consoles_reattach(
    own_agent: LiveAgent, servers: LiveServers, api: LiveClient, docker: aiodocker.Docker
) -> None:
    server_id = await servers.started()
    await api.command(server_id, "say before the agent died")
    before = await inspect(docker, server_id)

    own_agent.kill()
    own_agent.start()

    after = await inspect(docker, server_id)
    assert after["Id"] == before["Id"]
    assert after["State"]["StartedAt"] == before["State"]["StartedAt"]
    assert after["State"]["Running"] is True
    body = await read_body(api, server_id)
    assert (body["state"], body["desired_power"]) == ("running", "running")
    async with api.console(server_id) as console:
        await console.wait_for(status("running"))
        await console.wait_for(output_line("before the agent died"))
        await console.send("send command", "say after the agent came back")
        await console.wait_for(output_line("after the agent came back"))


async def test_simulated_host_reboot_restores_each_desired_power_state(
    own_agent: LiveAgent, servers: LiveServers, api: LiveClient, docker: aiodocker.Docker
) -> None:
    running = await servers.started()
    stopped = await servers.started()
    assert (await api.power(stopped, "stop")).status == 202
    await eventually(lambda: _state_is(api, stopped, "offline"))

    own_agent.kill()
    for server_id in (running, stopped):
        await docker.containers.container(game_container_name(server_id)).stop(t=1)
    own_agent.start()

    await eventually(lambda: _state_is(api, running, "running"))
    assert (await inspect(docker, running))["State"]["Running"] is True
    body = await read_body(api, stopped)
    assert (body["state"], body["container"]["running"]) == ("offline", False)


async def _state_is(api: LiveClient, server_id: uuid.UUID, state: str) -> bool:
    body = await read_body(api, server_id)
    return bool(body["state"] == state)


async def test_unknown_labelled_container_is_logged_and_left_alone(
    tmp_path: Path, signing_key: SigningKey, docker: aiodocker.Docker
) -> None:
    stranger_id = uuid.uuid4()
    name = f"stellar-test-stranger-{stranger_id.hex[:8]}"
    config: dict[str, Any] = {
        "Image": BUSYBOX_IMAGE,
        "Cmd": ["sleep", "600"],
        "Labels": server_labels(stranger_id, "game"),
    }
    container = await docker.containers.create(config, name=name)
    try:
        await container.start()
        agent = start_live_agent(tmp_path / "agent", signing_key)
        try:
            logged = [
                e
                for e in agent.log_events()
                if e.get("event") == "unknown managed container left alone"
            ]
        finally:
            agent.stop()
        info = await container.show()
    finally:
        await remove_container(container)

    # Containers left by other agents on this host are strangers too; ours must be among them.
    assert (name, str(stranger_id)) in [(e["container"], e["server"]) for e in logged]
    assert info["State"]["Running"] is True
