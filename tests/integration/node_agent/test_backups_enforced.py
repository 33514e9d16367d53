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


async def test_hard_links_and_sparse_files_cannot_make_a_backup_bigger_than_the_disk_limit(
    node: QuotaNode,
    signing_key: SigningKey,
    http: aiohttp.ClientSession,
    docker: aiodocker.Docker,
) -> None:
    """A game's hard links and sparse files cost (almost) nothing of its disk limit; each
    backup used to store them in full on the node's own disk, outside every limit (one 16 MiB
    file linked 8 times: 128 MiB of random data kept for a 64 MiB server, a million links a
    host's disk). A backup holds at most the server's disk limit, the most a restore takes."""
    backups = BackupsClient(FilesClient(node.agent, signing_key, http))
    server_id = await node.create(disk_mib=64)
    await start(node, server_id)
    code, output = await exec_in(
        docker,
        game_container_name(server_id),
        "sh",
        "-c",
        "cd /home/container && head -c 16777216 /dev/urandom > r.bin"
        " && for i in 1 2 3 4 5 6 7; do ln r.bin r$i.bin; done",
    )
    assert code == 0, output
    key = new_key()
    backup_id, answer = await backups.create(server_id, key)
    assert answer.status == 202, answer
    record = await backups.finished(server_id, backup_id)
    assert record["status"] == "failed", record
    assert "disk limit" in record["reason"], record
    stored = node.agent.data_dir / "backups" / str(server_id)
    assert [p.name for p in stored.iterdir() if ".stbk" in p.name] == []

    # A sparse file: 1 GiB written as zeros by a backup, nothing of the limit in the volume.
    code, output = await exec_in(
        docker,
        game_container_name(server_id),
        "sh",
        "-c",
        "cd /home/container && rm r?.bin && truncate -s 1G sparse.bin",
    )
    assert code == 0, output
    backup_id, answer = await backups.create(server_id, key)
    assert answer.status == 202, answer
    record = await backups.finished(server_id, backup_id)
    assert record["status"] == "failed", record
    assert "disk limit" in record["reason"], record

    # Within the limit, the same volume backs up.
    code, output = await exec_in(
        docker, game_container_name(server_id), "rm", "/home/container/sparse.bin"
    )
    assert code == 0, output
    backup_id, answer = await backups.create(server_id, key)
    assert answer.status == 202, answer
    assert (await backups.finished(server_id, backup_id))["status"] == "completed"
