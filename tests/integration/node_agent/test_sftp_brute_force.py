"""Brute force against the agent's SFTP listener: 10,000 logins with random user names from
100 source addresses (127.1.0.1 … 127.1.0.100). The agent's memory stays within 10 MiB of
its idle size, and a legitimate user still logs in during and after the flood. Every failed
attempt is counted in the agent's failure reports: at most one event per source and window."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncssh
import pytest

from tests.integration.node_agent.live_agent import (
    Frames,
    LiveAgent,
    LiveClient,
    LiveServers,
    start_live_agent,
)
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

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(600)]
ADDRESSES = [f"127.1.0.{n}" for n in range(1, 101)]
ATTEMPTS = 10_000
REPORT_SECONDS = 2.0


@pytest.fixture(scope="module")
def module_live_agent(
    tmp_path_factory: pytest.TempPathFactory, signing_key: SigningKey
) -> Iterator[LiveAgent]:
    agent = start_live_agent(
        tmp_path_factory.mktemp("sftp-flood"),
        signing_key,
        sftp_port=free_port(),
        sftp={"failure_report_seconds": REPORT_SECONDS},
    )
    try:
        yield agent
    finally:
        agent.stop()


async def attempt(port: int, source: str, junk: asyncssh.SSHKey) -> str:
    """One login with a random user name; how it ended."""
    try:
        async with asyncssh.connect(
            "127.0.0.1",
            port,
            username=secrets.token_hex(8),
            client_keys=[junk],
            known_hosts=None,
            local_addr=(source, 0),
            preferred_auth="publickey",
            agent_path=None,
            login_timeout=20,
        ):
            return "logged in"
    except asyncssh.PermissionDenied:
        return "refused"
    except (asyncssh.Error, OSError):
        return "closed"


async def legitimate_login(target: SftpTarget, name: str, key: UserKey) -> list[str]:
    client_key = asyncssh.read_private_key(key.path)
    async with (
        asyncssh.connect(
            "127.0.0.1",
            target.port,
            username=name,
            client_keys=[client_key],
            known_hosts=str(target.known_hosts()),
            agent_path=None,
        ) as conn,
        conn.start_sftp_client() as sftp,
    ):
        return list(await sftp.listdir("/"))


async def test_a_flood_of_random_logins_grows_no_memory_and_locks_out_no_user(
    servers: LiveServers,
    live_agent: LiveAgent,
    signing_key: SigningKey,
    http: aiohttp.ClientSession,
    api: LiveClient,
    tmp_path: Path,
) -> None:
    server_id = await servers.create()
    key = UserKey.make(tmp_path / "keys")
    await push_access(live_agent, signing_key, http, table((server_id, [user_row("ivy", key)])))
    target = await sftp_target(live_agent, signing_key, http, tmp_path / "ssh")
    name = username("ivy", server_id)
    junk = asyncssh.generate_private_key("ssh-ed25519")
    gate = asyncio.Semaphore(32)

    async def one(number: int) -> str:
        async with gate:
            return await attempt(target.port, ADDRESSES[number % len(ADDRESSES)], junk)

    # Warm up (imports, caches, the allocator's arenas) from other addresses, then measure.
    await asyncio.gather(*(attempt(target.port, f"127.2.0.{n}", junk) for n in range(1, 41)))
    assert await legitimate_login(target, name, key) == []
    idle = live_agent.rss_kib()

    async with api.node_events() as events:
        renewing = asyncio.create_task(keep_following(api, events))
        # The warm-up's failures are reported first (within one window).
        warm = await events.wait_for(failures_from("127.2.0."), timeout=REPORT_SECONDS * 3)
        assert warm["reasons"].get("unknown_account", 0) >= 1
        started = time.monotonic()
        flood = asyncio.gather(*(one(n) for n in range(ATTEMPTS)))
        during = await legitimate_login(target, name, key)
        outcomes = await flood
        after = live_agent.rss_kib()
        # Every attempt of the flood is counted: wait for the window after it to be reported.
        counted = 0
        deadline = time.monotonic() + REPORT_SECONDS * 5
        while counted < ATTEMPTS and time.monotonic() < deadline:
            await asyncio.sleep(REPORT_SECONDS / 2)
            reports = [f for f in events.received if failures_from("127.1.0.")(f)]
            counted = sum(f["count"] for f in reports)
        renewing.cancel()
    assert counted >= ATTEMPTS, f"{counted} of {ATTEMPTS} failures reported"
    # Bounded: one report per source and window, however many attempts.
    windows = (time.monotonic() - started) / REPORT_SECONDS + 2
    assert len(reports) <= len(ADDRESSES) * windows
    assert {f["source"] for f in reports} <= set(ADDRESSES)
    reasons = {reason for f in reports for reason in f["reasons"]}
    assert reasons <= {"unknown_account", "rate_limited", "too_many_connections"}
    assert "unknown_account" in reasons
    assert "rate_limited" in reasons

    assert during == []
    assert await legitimate_login(target, name, key) == []
    assert "logged in" not in outcomes
    assert after - idle < 10 * 1024, f"agent RSS grew {after - idle} KiB during the flood"
    # Each address had its burst of real checks (10, one more every 6 s, a few already in
    # flight); the rest were closed before the key exchange.
    elapsed = time.monotonic() - started
    per_address = 10 + elapsed / 6 + 5
    assert outcomes.count("refused") <= len(ADDRESSES) * per_address
    assert outcomes.count("closed") >= ATTEMPTS // 2
    checked = outcomes.count("refused")
    print(
        f"flood: {elapsed:.1f} s, RSS idle {idle} KiB, after {after} KiB, {checked} checked,"
        f" {counted} failures in {len(reports)} reports"
    )


async def keep_following(api: LiveClient, events: Frames) -> None:
    """Answer each ``token_expiring`` with a fresh token, as the control plane does."""
    answered: set[int] = set()
    while True:
        frame = await events.wait_for(
            lambda f: f.get("type") == "token_expiring" and id(f) not in answered, timeout=600
        )
        answered.add(id(frame))
        await events.send("auth", api.token("/api/v1/events", "node.events", "node"))


def failures_from(prefix: str) -> Callable[[dict[str, Any]], bool]:
    def accept(frame: dict[str, Any]) -> bool:
        return frame.get("type") == "sftp_failures" and str(frame["source"]).startswith(prefix)

    return accept
