"""Who the SFTP limits count: an IPv6 /64 as one source (its 2^64 addresses share one
failure bucket), and each account's sessions (at most ``max_sessions_per_user`` at once).

The IPv6 test adds a few addresses of two /64s of a unique local prefix to loopback (removed
after): the agent listens on one, the client connects from the others."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import asyncssh
import pytest

from tests.integration.node_agent.live_agent import LiveAgent, LiveServers
from tests.integration.node_agent.sftp_client import (
    UserKey,
    push_access,
    sftp_target,
    table,
    user_row,
    username,
)
from tests.support.agent_process import SigningKey, free_port

pytestmark = [pytest.mark.docker, pytest.mark.timeout(120)]
PREFIX = "fd5e:57e1:1a"  # a unique local /48
LISTEN = f"{PREFIX}::1"


# The agent's address, five of its /64 and one of another /64.
ONE_64 = [f"{PREFIX}::{host}" for host in ("a", "b", "c", "d")] + [f"{PREFIX}:0:12:34:56:78"]
OTHER_64 = f"{PREFIX}:1::d"


@pytest.fixture
def ipv6_addresses() -> Iterator[None]:
    """The test's addresses on loopback while it runs (Linux binds only assigned ones)."""
    added: list[str] = []
    try:
        for address in [LISTEN, *ONE_64, OTHER_64]:
            subprocess.run(
                ["ip", "-6", "addr", "add", f"{address}/128", "dev", "lo", "nodad"],
                check=True,
                capture_output=True,
            )
            added.append(address)
        yield
    finally:
        for address in added:
            subprocess.run(
                ["ip", "-6", "addr", "del", f"{address}/128", "dev", "lo"],
                check=True,
                capture_output=True,
            )


async def login(
    port: int, name: str, key: asyncssh.SSHKey, *, source: str, host: str = LISTEN
) -> asyncssh.SSHClientConnection:
    return await asyncssh.connect(
        host,
        port,
        username=name,
        client_keys=[key],
        known_hosts=None,
        local_addr=(source, 0),
        preferred_auth="publickey",
        agent_path=None,
        login_timeout=10,
    )


async def outcome(port: int, name: str, key: asyncssh.SSHKey, source: str) -> str:
    try:
        conn = await login(port, name, key, source=source)
    except asyncssh.PermissionDenied:
        return "refused"
    except (asyncssh.Error, OSError):
        return "closed"
    conn.close()
    await conn.wait_closed()
    return "logged in"


async def listing(conn: asyncssh.SSHClientConnection) -> list[str]:
    """The volume's root over ``conn``, which is closed after."""
    try:
        async with conn.start_sftp_client() as sftp:
            return list(await sftp.listdir("/"))
    finally:
        conn.close()


SFTP_PORT = free_port()


@pytest.mark.own_agent(sftp_port=SFTP_PORT, sftp_listen_host=LISTEN, sftp={"failures_burst": 3})
async def test_failures_from_one_ipv6_64_are_counted_together(
    ipv6_addresses: None,
    servers: LiveServers,
    live_agent: LiveAgent,
    signing_key: SigningKey,
    http: aiohttp.ClientSession,
    key: UserKey,
    tmp_path: Path,
) -> None:
    server_id = await servers.create()
    await push_access(live_agent, signing_key, http, table((server_id, [user_row("ivy", key)])))
    name = username("ivy", server_id)
    right = asyncssh.read_private_key(key.path)
    wrong = asyncssh.generate_private_key("ssh-ed25519")
    # Three wrong keys, each from another address of one /64: its bucket (3) is empty now.
    for source in ONE_64[:3]:
        assert await outcome(SFTP_PORT, name, wrong, source) == "refused"
    # Other addresses of that /64 are closed before the key exchange, even with the right key.
    for source in ONE_64[3:]:
        assert await outcome(SFTP_PORT, name, right, source) == "closed"
    # Another /64 is another source: it logs in.
    assert await outcome(SFTP_PORT, name, right, OTHER_64) == "logged in"


@pytest.mark.own_agent(sftp_port=SFTP_PORT, sftp={"max_sessions_per_user": 2})
async def test_an_account_holds_at_most_its_cap_of_sessions(
    servers: LiveServers,
    live_agent: LiveAgent,
    signing_key: SigningKey,
    http: aiohttp.ClientSession,
    key: UserKey,
    tmp_path: Path,
) -> None:
    first, second = await servers.create(), await servers.create()
    other = UserKey.make(tmp_path / "other")
    ivy = user_row("ivy", key)
    await push_access(
        live_agent,
        signing_key,
        http,
        table((first, [ivy, user_row("max", other)]), (second, [ivy])),
    )
    target = await sftp_target(live_agent, signing_key, http, tmp_path / "ssh")
    mine = asyncssh.read_private_key(key.path)

    async def connect(name: str, client_key: asyncssh.SSHKey) -> asyncssh.SSHClientConnection:
        return await login(target.port, name, client_key, source="127.0.0.1", host="127.0.0.1")

    # Two sessions, on two servers: the cap is per account on the node.
    held = [
        await connect(username("ivy", first), mine),
        await connect(username("ivy", second), mine),
    ]
    # The refusal comes right after the login: at the latest, the first request meets it.
    with pytest.raises(asyncssh.DisconnectError, match="too many SFTP sessions"):
        await listing(await connect(username("ivy", first), mine))
    # Another account is not affected.
    max_conn = await connect(username("max", first), asyncssh.read_private_key(other.path))
    max_conn.close()
    # One session ends: there is room again.
    ended = held.pop()
    ended.close()
    await ended.wait_closed()
    assert await listing(await connect(username("ivy", first), mine)) == []
    for conn in held:
        conn.close()
