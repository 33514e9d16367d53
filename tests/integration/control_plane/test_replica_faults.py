"""Two control-plane replicas as real processes: authorization is never stale across them (a
key revoked or a session ended on one is refused on the other at the next request), and
their PostgreSQL (the test's own) stopped and started while they serve: 503
``database_unavailable`` with Retry-After meanwhile, recovery without a restart, and a key
revoked just before the outage still refused after it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.conftest import _create_postgres_database, _drop_postgres_database
from tests.integration.control_plane.replicas import (
    ADMIN,
    fail_with_logs,
    metrics_of,
    prepare_database,
    replica_environment,
    running_replicas,
    signed_in,
    signing_key,
)
from tests.support.control_plane_process import ControlPlaneProcess, RemoteBrowser
from tests.support.private_services import private_postgres

pytestmark = pytest.mark.slow
RECOVERY_SECONDS = 20.0


@pytest.fixture
async def database_url() -> AsyncIterator[str]:
    url = await _create_postgres_database()
    try:
        await prepare_database(url, ADMIN)
        yield url
    finally:
        await _drop_postgres_database(url)


async def new_key(admin: RemoteBrowser, name: str) -> tuple[str, str]:
    key = await admin.json(
        "POST", "/api/v1/account/api-keys", status=201, json={"name": name, "scopes": ["read"]}
    )
    return str(key["id"]), str(key["key"])


def holding(replica: ControlPlaneProcess, key: str) -> RemoteBrowser:
    bot = RemoteBrowser.on(replica)
    bot.api_key = key
    return bot


async def test_a_key_revoked_or_a_session_ended_on_one_replica_is_refused_on_the_other_at_once(
    database_url: str, tmp_path: Path
) -> None:
    key_file, _ = signing_key(tmp_path)
    async with running_replicas(tmp_path, replica_environment(database_url, key_file)) as (
        first,
        second,
    ):
        admin = await signed_in(first, ADMIN)
        elsewhere = admin.moved_to(second)
        key_id, key = await new_key(admin, "bot")
        bot = holding(second, key)
        try:
            await bot.json("GET", "/api/v1/servers")
            await elsewhere.json("GET", "/api/v1/servers")

            await admin.json("DELETE", f"/api/v1/account/api-keys/{key_id}", status=204)
            body = await bot.json("GET", "/api/v1/servers", status=401)
            assert body["error"]["code"] == "unauthenticated"

            await admin.json("POST", "/api/v1/auth/logout", status=204)
            await elsewhere.json("GET", "/api/v1/servers", status=401)
        finally:
            for browser in (admin, elsewhere, bot):
                await browser.close()


async def eventually_ok(bot: RemoteBrowser, replicas: list[ControlPlaneProcess]) -> float:
    """Seconds until the replica answers the key again (it is never restarted)."""
    started = time.monotonic()
    while time.monotonic() - started < RECOVERY_SECONDS:
        status, _ = await bot.status_and_body("GET", "/api/v1/servers")
        if status == 200:
            return time.monotonic() - started
        assert status == 503, status
        await asyncio.sleep(0.2)
    fail_with_logs(f"{bot.base_url} did not recover", replicas)
    raise AssertionError


async def test_postgres_stopped_and_started_under_two_replicas(tmp_path: Path) -> None:
    with private_postgres() as postgres:
        await prepare_database(postgres.url, ADMIN)
        key_file, _ = signing_key(tmp_path)
        environment = replica_environment(postgres.url, key_file)
        async with running_replicas(tmp_path, environment) as replicas:
            admin = await signed_in(replicas[0], ADMIN)
            kept_id, kept = await new_key(admin, "kept")
            revoked_id, revoked = await new_key(admin, "revoked")
            bots = [holding(r, kept) for r in replicas]
            stale = [holding(r, revoked) for r in replicas]
            anonymous = [RemoteBrowser.on(r) for r in replicas]
            try:
                for bot in bots + stale:
                    await bot.json("GET", "/api/v1/servers")
                # Revoked just before the outage, on one replica.
                await admin.json("DELETE", f"/api/v1/account/api-keys/{revoked_id}", status=204)
                postgres.stop()

                # Every request that needs the database; a key (revoked or not) is never
                # let through unchecked meanwhile.
                calls: list[tuple[RemoteBrowser, str, str, dict[str, str] | None]]
                calls = [(c, "GET", "/api/v1/servers", None) for c in bots + stale]
                login = {"email": ADMIN, "password": "x" * 12}
                calls += [(c, "POST", "/api/v1/auth/login", login) for c in anonymous]
                for client, method, path, body in calls:
                    async with client.session.request(
                        method, path, json=body, headers=client.headers_for(method, {})
                    ) as answer:
                        got = await answer.json()
                        assert answer.status == 503, (client.base_url, path, got)
                        assert got["error"]["code"] == "database_unavailable", got
                        assert answer.headers["Retry-After"] == "5"
                for client in anonymous:
                    assert (await client.status_and_body("GET", "/healthz"))[0] == 200
                    ready_status, ready = await client.status_and_body("GET", "/readyz")
                    assert ready_status == 503
                    assert ready["database"] == "unavailable"

                postgres.start()
                took = [await eventually_ok(bot, replicas) for bot in bots]
                print(f"\nrecovery after PostgreSQL came back: {max(took):.2f} s")
                for client in stale:
                    body = await client.json("GET", "/api/v1/servers", status=401)
                    assert body["error"]["code"] == "unauthenticated"
                assert all(r.running for r in replicas), "a replica was restarted or died"
                # Each replica listens for state changes again, by itself.
                for replica in replicas:
                    deadline = time.monotonic() + RECOVERY_SECONDS
                    while True:
                        text = await metrics_of(replica)
                        if replica.metric(text, "stellar_state_notifications_listening") == 1.0:
                            break
                        if time.monotonic() > deadline:
                            fail_with_logs("state notifications never came back", replicas)
                        await asyncio.sleep(0.2)
                await admin.json("DELETE", f"/api/v1/account/api-keys/{kept_id}", status=204)
                for bot in bots:
                    await bot.json("GET", "/api/v1/servers", status=401)
            finally:
                for client in [admin, *bots, *stale, *anonymous]:
                    await client.close()
