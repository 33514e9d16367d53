"""Backups on the kernel-enforced disk backends: btrfs (snapshot) and ext4 (loop image).

On btrfs a running game is copied from a read-only snapshot that is deleted afterwards; on
both, a restore happens inside the volume, so the disk limit (qgroup, ext4 image) holds
before and after, and the restored tree equals the backed-up one.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import aiodocker
import aiohttp
import pytest

from node_agent.docker.hardening import game_container_name
from tests.integration.node_agent.backups_client import BackupsClient, new_key, tree_hash
from tests.integration.node_agent.files_client import FilesClient
from tests.integration.node_agent.quota_nodes import (
    QuotaNode,
    start,
    write_mib,
)
from tests.support.agent_process import SigningKey
from tests.support.containers import exec_in
from tests.support.storage import needs_root_to_mount

pytestmark = [pytest.mark.docker, needs_root_to_mount, pytest.mark.timeout(180)]


async def _stop(node: QuotaNode, server_id: uuid.UUID) -> None:
    answer = await node.api.power(server_id, "stop")
    assert answer.status == 202, answer
    deadline = time.monotonic() + 30
    while (await node.api.read(server_id)).body["state"] != "offline":
        assert time.monotonic() < deadline, "the game never stopped"
        await asyncio.sleep(0.1)


async def test_backup_and_restore_keep_the_disk_limit(
    node: QuotaNode,
    signing_key: SigningKey,
    http: aiohttp.ClientSession,
    docker: aiodocker.Docker,
) -> None:
    backups = BackupsClient(FilesClient(node.agent, signing_key, http))
    server_id = await node.create(disk_mib=64)
    await start(node, server_id)
    assert await write_mib(docker, server_id, "region.bin", 8) == ""
    code, output = await exec_in(
        docker,
        game_container_name(server_id),
        "sh",
        "-c",
        "cd /home/container && mkdir -p cfg && echo a=1 > cfg/a.txt && ln -s cfg/a.txt l",
    )
    assert code == 0, output
    volume = node.volume(server_id)
    before = tree_hash(volume)
    limit = (await node.disk(server_id)).body["total_bytes"]
    key = new_key()

    backup_id, answer = await backups.create(server_id, key)
    assert answer.status == 202, answer
    record = await backups.finished(server_id, backup_id)

    assert record["status"] == "completed", record
    assert record["consistency"] == ("snapshot" if node.backend == "btrfs" else "live")
    if node.backend == "btrfs":
        assert [p.name for p in node.pool.iterdir() if p.name.startswith(".stellar")] == []
    await _stop(node, server_id)
    (volume / "region.bin").unlink()
    (volume / "cfg" / "a.txt").write_text("a=2\n")

    answer = await backups.restore(server_id, backup_id, key)
    assert answer.status == 202, answer
    outcome = await backups.restored(server_id, backup_id)

    assert outcome["status"] == "completed", outcome
    assert tree_hash(volume) == before
    disk = await node.disk(server_id)
    assert disk.body["total_bytes"] == limit, disk.body
    await start(node, server_id)
    refused = await write_mib(docker, server_id, "fill.bin", 80)
    assert any(error in refused for error in ("Disk quota exceeded", "No space left")), refused
