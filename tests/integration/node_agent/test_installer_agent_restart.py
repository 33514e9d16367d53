"""An installer the agent lost when it restarted is stopped, not left writing into the volume.

The record says the install failed (the agent restarted while it ran), the owner is free to
use the files again — write them, restore a backup, reinstall — yet the old install container
was left running: whatever the script wrote afterwards (a fresh world, default configs)
replaced what the owner had put there since.
"""

from __future__ import annotations

import asyncio

import aiodocker
import aiohttp
import pytest

from node_agent.docker.hardening import install_container_name
from tests.integration.node_agent.files_client import FilesClient
from tests.integration.node_agent.live_agent import LiveAgent, LiveServers, eventually, read_body
from tests.support.agent_process import SigningKey
from tests.support.containers import FAKE_GAME_IMAGE

pytestmark = [pytest.mark.docker, pytest.mark.own_agent, pytest.mark.timeout(120)]
SCRIPT = "echo started; sleep 5; echo fresh > /mnt/server/world.dat; echo done"


async def test_an_installer_orphaned_by_an_agent_restart_is_stopped(
    live_agent: LiveAgent,
    servers: LiveServers,
    signing_key: SigningKey,
    http: aiohttp.ClientSession,
    docker: aiodocker.Docker,
) -> None:
    files = FilesClient(live_agent, signing_key, http)
    server_id = await servers.create(
        install={"image": FAKE_GAME_IMAGE, "script": SCRIPT, "volume_path": "/mnt/server"}
    )
    installer = install_container_name(server_id)

    async def installing() -> bool:
        found = await docker.containers.list(filters={"name": [installer]})
        return bool(found)

    await eventually(installing, 30)
    live_agent.kill()
    live_agent.start()

    body = await read_body(files, server_id)
    assert body["install"] == "failed", body
    written = await files.write_file(server_id, "world.dat", b"mine\n")
    assert written.status == 200, written
    await asyncio.sleep(7)  # past the script's sleep

    assert (live_agent.volume(server_id) / "world.dat").read_bytes() == b"mine\n"
    assert await docker.containers.list(all=True, filters={"name": [installer]}) == []
