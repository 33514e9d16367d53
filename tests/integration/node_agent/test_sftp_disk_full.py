"""A full disk over SFTP: the kernel's limit refuses the upload, the client gets a clean SFTP
failure, and the old file is still there, whole (btrfs qgroup and ext4 image backends)."""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path

import aiohttp
import pytest

from tests.integration.node_agent.quota_nodes import MIB, NodeFactory
from tests.integration.node_agent.sftp_client import (
    UserKey,
    push_access,
    sftp_target,
    table,
    user_row,
    username,
)
from tests.support.agent_process import SigningKey, free_port
from tests.support.storage import needs_root_to_mount

pytestmark = [pytest.mark.docker, needs_root_to_mount, pytest.mark.timeout(180)]

DISK_MIB = 64
FILLER_MIB = 48


@pytest.mark.parametrize("backend", ["btrfs", "ext4"])
async def test_an_upload_past_the_disk_limit_fails_cleanly_and_keeps_the_old_file(
    node_factory: NodeFactory,
    signing_key: SigningKey,
    http: aiohttp.ClientSession,
    tmp_path: Path,
    backend: str,
) -> None:
    node = node_factory(backend, sftp_port=free_port())
    server_id: uuid.UUID = await node.create(disk_mib=DISK_MIB)
    volume = node.volume(server_id)
    key = UserKey.make(tmp_path / "keys")
    await push_access(node.agent, signing_key, http, table((server_id, [user_row("max", key)])))
    target = await sftp_target(node.agent, signing_key, http, tmp_path / "ssh")
    # Most of the limit taken beforehand (from the host, which the kernel's limit counts
    # too), so that a few MiB over SFTP reach it (paramiko sends 2-3 MiB/s here).
    filler = os.urandom(FILLER_MIB * MIB)
    with (volume / "filler.bin").open("wb") as handle:
        handle.write(filler)
        os.fsync(handle.fileno())
    old = os.urandom(MIB)
    big = tmp_path / "too-big.bin"
    big.write_bytes(os.urandom((DISK_MIB - FILLER_MIB + 8) * MIB))

    def session() -> tuple[str, str]:
        with target.sftp(username("max", server_id), key) as sftp:
            with sftp.open("/world.dat", "w") as handle:
                handle.write(old)
            try:
                sftp.put(str(big), "/world.dat")
                replaced = "replaced"
            except OSError as err:
                replaced = str(err)
            try:  # in place (no truncation), as a resumed upload writes
                with sftp.open("/world.dat", "r+") as handle:
                    handle.seek(len(old))
                    handle.write(big.read_bytes())
                grown = "grown"
            except OSError as err:
                grown = str(err)
            return replaced, grown

    replaced, grown = await asyncio.to_thread(session)
    assert replaced != "replaced"
    assert "no space" in replaced.lower() or "failure" in replaced.lower(), replaced
    assert grown != "grown"
    # The atomic replacement left the old file whole, and no temporary file behind.
    assert (volume / "world.dat").read_bytes()[: len(old)] == old
    assert [n for n in os.listdir(volume) if n.startswith(".stellar-write-")] == []
    assert (volume / "filler.bin").read_bytes() == filler
