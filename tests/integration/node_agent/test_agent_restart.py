"""The agent's state outlives the agent: SIGKILL, a simulated host reboot, strangers.

Each test runs agents of its own (``agent_factory``) with the same data directory across
restarts, and real game containers that must not notice the agent going away.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiodocker
import aiohttp
import pytest

from node_agent.docker.hardening import game_container_name, server_labels
from node_agent.storage.directory import VOLUMES_DIR
from tests.integration.node_agent.files_client import FilesClient
from tests.integration.node_agent.live_agent import (
    LiveAgent,
    LiveClient,
    LiveServers,
    eventually,
    output_line,
    read_body,
    start_live_agent,
    status,
)
from tests.support.agent_process import SigningKey
from tests.support.containers import BUSYBOX_IMAGE, remove_container

pytestmark = [pytest.mark.docker, pytest.mark.own_agent, pytest.mark.timeout(120)]


async def inspect(docker: aiodocker.Docker, server_id: uuid.UUID) -> dict[str, Any]:
    info: dict[str, Any] = await docker.containers.container(game_container_name(server_id)).show()
    return info


async def test_agent_sigkill_leaves_games_running_and_consoles_reattach(
    live_agent: LiveAgent, servers: LiveServers, api: LiveClient, docker: aiodocker.Docker
) -> None:
    server_id = await servers.started()
    await api.command(server_id, "say before the agent died")
    before = await inspect(docker, server_id)

    live_agent.kill()
    live_agent.start()

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
    live_agent: LiveAgent, servers: LiveServers, api: LiveClient, docker: aiodocker.Docker
) -> None:
    running = await servers.started()
    stopped = await servers.started()
    assert (await api.power(stopped, "stop")).status == 202
    await eventually(lambda: _state_is(api, stopped, "offline"))

    live_agent.kill()
    for server_id in (running, stopped):
        await docker.containers.container(game_container_name(server_id)).stop(t=1)
    live_agent.start()

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


async def test_an_upload_cut_by_sigkill_leaves_no_temporary_file_after_restart(
    live_agent: LiveAgent,
    servers: LiveServers,
    signing_key: SigningKey,
    http: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    files = FilesClient(live_agent, signing_key, http)
    server_id = await servers.create()
    assert (await files.post(server_id, "directory", {"path": "/world"})).status == 201
    volume = live_agent.data_dir / VOLUMES_DIR / str(server_id)
    # What a game may name its own files: nothing that could be one of the agent's.
    (volume / ".stellar-write-notes.txt").write_text("the game's own\n")
    (volume / ".stellar-write-0123456789abcdef0").write_text("one hex digit too many\n")
    outside = tmp_path / "outside.txt"
    outside.write_text("not in the volume\n")
    os.symlink(outside, volume / "world" / ".stellar-write-0123456789abcdef")
    (volume / ".stellar-write-fedcba9876543210").mkdir()
    kept = sorted(p.name for p in volume.rglob(".stellar-write-*"))

    async def first_mebibyte_then_stall() -> AsyncIterator[bytes]:
        yield b"\x5a" * 1024 * 1024
        await asyncio.Event().wait()

    upload = asyncio.create_task(
        files.upload(server_id, "/world/region.dat", 8 * 1024 * 1024, first_mebibyte_then_stall())
    )
    try:
        temporary = await eventually(lambda: _agent_temporaries(volume / "world"), timeout=10)
        live_agent.kill()
    finally:
        upload.cancel()
        await asyncio.gather(upload, return_exceptions=True)
    assert [p.exists() for p in temporary] == [True]

    live_agent.start()

    assert not temporary[0].exists()
    assert sorted(p.name for p in volume.rglob(".stellar-write-*")) == kept
    assert outside.read_text() == "not in the volume\n"
    removed = [e for e in live_agent.log_events() if e.get("event") == "unfinished writes removed"]
    assert [(e["server"], e["count"]) for e in removed] == [(str(server_id), 1)]


async def _agent_temporaries(directory: Path) -> list[Path]:
    return [p for p in directory.glob(".stellar-write-*") if not p.is_symlink()]
