"""SFTP into a server's files with real clients (paramiko, OpenSSH ``sftp -b``), public keys.

One agent with its SFTP listener on; each test pushes the access table it needs, signed as the
control plane does, and makes servers (their volumes) through the signed API. Traps are
planted in the volume on the host; a marker outside it proves nothing leaked.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import paramiko
import pytest

from tests.integration.node_agent.live_agent import LiveAgent, LiveServers, start_live_agent
from tests.integration.node_agent.sftp_client import (
    SftpTarget,
    UserKey,
    push_access,
    sftp_target,
    table,
    user_row,
    username,
)
from tests.support.agent_process import SigningKey, free_port

pytestmark = [pytest.mark.docker, pytest.mark.timeout(300)]
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def module_live_agent(
    tmp_path_factory: pytest.TempPathFactory, signing_key: SigningKey
) -> Iterator[LiveAgent]:
    """This module's agent: the live one, with SFTP on a free port."""
    agent = start_live_agent(
        tmp_path_factory.mktemp("sftp-agent"), signing_key, sftp_port=free_port()
    )
    try:
        yield agent
    finally:
        agent.stop()


@pytest.fixture
async def target(
    live_agent: LiveAgent, signing_key: SigningKey, http: aiohttp.ClientSession, tmp_path: Path
) -> SftpTarget:
    return await sftp_target(live_agent, signing_key, http, tmp_path / "ssh")


@pytest.fixture
def key(tmp_path: Path) -> UserKey:
    return UserKey.make(tmp_path / "keys")


@pytest.fixture
def host_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "host"
    directory.mkdir()
    (directory / "marker.txt").write_bytes(b"host secret\n")
    return directory


def random_file(path: Path, size: int) -> str:
    """Write ``size`` random bytes; their SHA-256."""
    digest = hashlib.sha256()
    with path.open("wb") as out:
        left = size
        while left:
            chunk = os.urandom(min(left, 4 * MIB))
            out.write(chunk)
            digest.update(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(4 * MIB):
            digest.update(chunk)
    return digest.hexdigest()


async def test_the_host_key_is_made_once_and_shown_by_the_system_info(
    live_agent: LiveAgent, target: SftpTarget
) -> None:
    key_file = live_agent.data_dir / "sftp_host_ed25519_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert target.host_key.startswith("ssh-ed25519 ")
    # The key the listener presents is the one shown: paramiko's RejectPolicy would refuse
    # any other (known_hosts holds only the shown key).
    transport = paramiko.Transport(("127.0.0.1", target.port))
    try:
        transport.start_client(timeout=10)
        presented = transport.get_remote_server_key()
    finally:
        transport.close()
    assert f"{presented.get_name()} {presented.get_base64()}" == target.host_key
    fingerprint = hashlib.sha256(presented.asbytes()).digest()
    assert target.fingerprint == "SHA256:" + base64.b64encode(fingerprint).decode().rstrip("=")


async def test_paramiko_uploads_downloads_renames_lists_and_deletes(
    servers: LiveServers,
    live_agent: LiveAgent,
    signing_key: SigningKey,
    http: aiohttp.ClientSession,
    target: SftpTarget,
    key: UserKey,
    tmp_path: Path,
) -> None:
    server_id = await servers.create()
    assert (
        await push_access(
            live_agent, signing_key, http, table((server_id, [user_row("alice", key)]))
        )
        == 204
    )
    source = tmp_path / "upload.bin"
    digest = random_file(source, 64 * MIB)
    back = tmp_path / "download.bin"

    def session() -> list[str]:
        with target.paramiko(username("alice", server_id), key) as sftp:
            sftp.mkdir("/worlds")
            sftp.put(str(source), "/worlds/world.bin")
            sftp.rename("/worlds/world.bin", "/worlds/renamed.bin")
            sftp.get("/worlds/renamed.bin", str(back))
            names = sorted(sftp.listdir("/worlds"))
            sftp.remove("/worlds/renamed.bin")
            sftp.rmdir("/worlds")
            return names

    names = await asyncio.to_thread(session)
    assert names == ["renamed.bin"]
    assert sha256(back) == digest
    assert not (live_agent.volume(server_id) / "worlds").exists()


async def test_openssh_sftp_in_batch_mode(
    servers: LiveServers,
    live_agent: LiveAgent,
    signing_key: SigningKey,
    http: aiohttp.ClientSession,
    target: SftpTarget,
    key: UserKey,
    tmp_path: Path,
) -> None:
    server_id = await servers.create()
    await push_access(live_agent, signing_key, http, table((server_id, [user_row("bob", key)])))
    digest = random_file(tmp_path / "mod.jar", 8 * MIB)
    commands = "\n".join(
        [
            "mkdir plugins",
            "put mod.jar plugins/mod.jar",
            "rename plugins/mod.jar plugins/renamed.jar",
            "chmod 600 plugins/renamed.jar",
            "ls -l plugins",
            "get plugins/renamed.jar back.jar",
            "-symlink plugins/renamed.jar link.jar",
            "rm plugins/renamed.jar",
            "rmdir plugins",
            "ls",
        ]
    )
    result = await target.openssh_batch(username("bob", server_id), key, commands, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "renamed.jar" in result.stdout
    assert "-rw-------" in result.stdout
    assert sha256(tmp_path / "back.jar") == digest
    assert "symlink" in result.stderr.lower() or "permission denied" in result.stderr.lower()
    assert sorted(os.listdir(live_agent.volume(server_id))) == []
