"""A reinstall asked for while a backup is being restored is refused at once (409), never
run over the files the restore just put back.

It used to wait for the server's lock, which the restore holds until it ends: the control
plane gave up on the node after its timeout and told the user the reinstall failed, and the
agent then ran the blueprint's install script over the restored world anyway — whatever the
script writes (a fresh world, default configs) replaced what the owner had restored.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.node_agent.backups_client import BackupsClient, new_key
from tests.integration.node_agent.files_client import FilesClient
from tests.integration.node_agent.live_agent import LiveAgent, LiveServers, eventually, read_body
from tests.support.containers import FAKE_GAME_IMAGE, Answer

pytestmark = [pytest.mark.docker, pytest.mark.timeout(240)]
# Enough that the restore is still writing when the reinstall comes.
WORLD_BYTES = 160 * 1024 * 1024


@pytest.fixture
def backups(api: FilesClient) -> BackupsClient:
    return BackupsClient(api)


@pytest.fixture(autouse=True)
def backups_removed(live_agent: LiveAgent) -> Iterator[None]:
    yield
    shutil.rmtree(live_agent.data_dir / "backups", ignore_errors=True)


async def reinstall(api: FilesClient, server_id: uuid.UUID) -> Answer:
    return await api.send("POST", server_id, "server.reinstall", suffix="/reinstall")


async def test_a_reinstall_during_a_restore_is_refused_and_the_restored_world_stays(
    servers: LiveServers, api: FilesClient, backups: BackupsClient, live_agent: LiveAgent
) -> None:
    script = "echo fresh > /mnt/server/world.dat; echo default > /mnt/server/level.dat"
    server_id = await servers.create(
        disk_mib=1024,
        install={"image": FAKE_GAME_IMAGE, "script": script, "volume_path": "/mnt/server"},
    )

    async def installed() -> bool:
        return bool((await read_body(api, server_id))["install"] == "installed")

    await eventually(installed, 60)
    volume = live_agent.volume(server_id)
    (volume / "world.dat").write_bytes(b"saved\n")
    (volume / "level.dat").write_bytes(os.urandom(WORLD_BYTES))
    key = new_key()
    backup_id, answer = await backups.create(server_id, key)
    assert answer.status == 202, answer
    assert (await backups.finished(server_id, backup_id, 120))["status"] == "completed"
    (volume / "world.dat").write_bytes(b"changed since\n")

    started = await backups.restore(server_id, backup_id, key)
    assert started.status == 202, started
    restore_was_running = (await backups.read(server_id, backup_id)).body["restore"]["status"]
    refused = await reinstall(api, server_id)

    assert restore_was_running == "running", "the restore ended too soon for this test"
    assert (await backups.restored(server_id, backup_id, 120))["status"] == "completed"

    async def settled() -> dict[str, Any] | None:
        status = await read_body(api, server_id)
        return status if status["install"] != "installing" else None

    status = await eventually(settled, 60)
    assert (volume / "world.dat").read_bytes() == b"saved\n"
    assert refused.status == 409, refused
    assert "restore" in refused.body["error"]["message"]
    assert (status["state"], status["install"]) == ("offline", "installed")
    # And once the restore is over, a reinstall is taken again.
    assert (await reinstall(api, server_id)).status == 202
