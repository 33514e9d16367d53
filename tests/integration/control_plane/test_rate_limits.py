"""Rate limits against the real app (memory backend, injectable clock) and the real Redis."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as redis
from multidict import CIMultiDict
from pytest_aiohttp import AiohttpClient, AiohttpServer
from sqlalchemy.ext.asyncio import AsyncEngine

from control_plane.app import create_app
from control_plane.keys import RATE_LIMITER
from control_plane.security.rate_limit import (
    MemoryBackend,
    RateLimiter,
    RateLimitPolicy,
    RedisBackend,
    parse_presets,
)
from control_plane.settings import load_settings
from tests.conftest import service_missing
from tests.integration.control_plane.conftest import AUTH_SECRET
from tests.integration.control_plane.mfa_support import ENCRYPTION_KEYS
from tests.support.clocks import MonotonicClock
from tests.support.panel import Panel
from tests.support.ports import free_port
from tests.support.world import build_world

REDIS_URL = os.environ.get("STELLAR_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
LOGIN = "/api/v1/auth/login"
BAD_LOGIN = {"email": "nobody@example.org", "password": "wrong password!"}
# The tests here are about per-address buckets; the one guessed address's own allowance
# (test_password_guessing.py) is raised out of their way.
ACCOUNT_UNLIMITED = "sign_in_account=1000000/60"


async def limited_panel(
    database_url: str,
    server_factory: AiohttpServer,
    client_factory: AiohttpClient,
    clock: MonotonicClock,
    **env: str,
) -> Panel:
    settings = load_settings(
        {
            "STELLAR_DATABASE_URL": database_url,
            "STELLAR_AUTH_SECRET": AUTH_SECRET,
            "STELLAR_BCRYPT_COST": "10",
            **env,
        }
    )
    server = await server_factory(create_app(settings, background_jobs=False, clock=clock))
    return Panel(server, client_factory)


@pytest.fixture
async def panel(
    engine: AsyncEngine,
    database_url: str,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
    rate_clock: MonotonicClock,
) -> Panel:
    return await limited_panel(
        database_url,
        aiohttp_server,
        aiohttp_client,
        rate_clock,
        STELLAR_RATE_LIMITS=ACCOUNT_UNLIMITED,
    )


async def test_authentication_preset_counts_down_refuses_and_refills(
    panel: Panel, rate_clock: MonotonicClock
) -> None:
    browser = await panel.browser()
    remaining = []
    for _ in range(5):
        response = await browser.request("POST", LOGIN, json=BAD_LOGIN)
        assert response.status == 401
        assert response.headers["X-RateLimit-Limit"] == "5"
        assert response.headers["RateLimit-Policy"] == '"authentication";q=5;w=60'
        remaining.append(int(response.headers["X-RateLimit-Remaining"]))
    assert remaining == [4, 3, 2, 1, 0]
    refused = await browser.request("POST", LOGIN, json=BAD_LOGIN)
    assert refused.status == 429
    assert refused.headers["Retry-After"] == "12"  # one token per 12 s
    assert (await refused.json())["error"]["code"] == "rate_limited"
    assert int(refused.headers["X-RateLimit-Reset"]) >= int(time.time()) + 59
    rate_clock.advance(11.9)
    assert (await browser.request("POST", LOGIN, json=BAD_LOGIN)).status == 429
    rate_clock.advance(0.2)
    assert (await browser.request("POST", LOGIN, json=BAD_LOGIN)).status == 401
    assert (await browser.request("POST", LOGIN, json=BAD_LOGIN)).status == 429
    rate_clock.advance(60)
    for _ in range(5):
        assert (await browser.request("POST", LOGIN, json=BAD_LOGIN)).status == 401


async def test_general_api_preset_allows_100_per_minute(
    panel: Panel, rate_clock: MonotonicClock
) -> None:
    await panel.create_user("user@example.org")
    browser = await panel.browser()
    await browser.login("user@example.org")  # authentication preset, not the API one
    for n in range(100):
        response = await browser.request("GET", "/api/v1/auth/session")
        assert response.status == 200, n
    response = await browser.request("GET", "/api/v1/auth/session")
    assert response.status == 429
    assert response.headers["RateLimit"] == '"api";r=0;t=60'
    # Presets never share a bucket: logging in again is still possible.
    assert (await browser.request("POST", LOGIN, json=BAD_LOGIN)).status == 401


async def test_power_actions_are_limited_per_server(panel: Panel) -> None:
    world = await build_world(panel)
    alice_server, bob_server = world.ids["alice_server"], world.ids["bob_server"]
    # alice's and bob's browsers share 127.0.0.1: the key is client IP *and* server.
    for _ in range(10):
        response = await world.alice.request(
            "POST", f"/api/v1/servers/{alice_server}/power", json={"action": "start"}
        )
        assert response.status == 503  # let through; the node is down
    refused = await world.alice.request(
        "POST", f"/api/v1/servers/{alice_server}/power", json={"action": "start"}
    )
    assert refused.status == 429
    other = await world.bob.request(
        "POST", f"/api/v1/servers/{bob_server}/power", json={"action": "start"}
    )
    assert other.status == 503


async def test_issuing_sftp_passwords_is_limited_like_signing_in(
    engine: AsyncEngine,
    database_url: str,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
    rate_clock: MonotonicClock,
) -> None:
    """Each SFTP password costs a scrypt (~50 ms of CPU and 16 MiB) and a push of the node's
    whole access table: on the ``api`` preset one address had 100 a minute made."""
    panel = await limited_panel(
        database_url,
        aiohttp_server,
        aiohttp_client,
        rate_clock,
        STELLAR_ENCRYPTION_KEYS=ENCRYPTION_KEYS,
        STELLAR_TRUSTED_PROXIES="127.0.0.1/32",
    )
    world = await build_world(panel)
    path = f"/api/v1/servers/{world.ids['alice_server']}/sftp-password"
    alice_at = {"X-Forwarded-For": "203.0.113.50"}  # the world's sign-ins came from 127.0.0.1
    statuses = [
        (await world.alice.request("POST", path, headers=alice_at)).status for _ in range(7)
    ]
    assert statuses == [201] * 5 + [429] * 2


async def test_spoofed_forwarded_for_does_not_reset_a_limit(panel: Panel) -> None:
    browser = await panel.browser()
    for _ in range(5):
        await browser.request("POST", LOGIN, json=BAD_LOGIN)
    for fake in ("203.0.113.7", "198.51.100.1, 203.0.113.9", "::1"):
        response = await browser.request(
            "POST", LOGIN, json=BAD_LOGIN, headers={"X-Forwarded-For": fake}
        )
        assert response.status == 429, fake


async def test_forwarded_for_from_a_trusted_proxy_is_honoured(
    engine: AsyncEngine,
    database_url: str,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
    rate_clock: MonotonicClock,
) -> None:
    panel = await limited_panel(
        database_url,
        aiohttp_server,
        aiohttp_client,
        rate_clock,
        STELLAR_TRUSTED_PROXIES="127.0.0.1/32",
    )
    browser = await panel.browser()
    first = {"X-Forwarded-For": "203.0.113.7"}
    for _ in range(5):
        assert (await browser.request("POST", LOGIN, json=BAD_LOGIN, headers=first)).status == 401
    assert (await browser.request("POST", LOGIN, json=BAD_LOGIN, headers=first)).status == 429
    second = {"X-Forwarded-For": "203.0.113.7, 198.51.100.20"}  # the proxy saw .20
    assert (await browser.request("POST", LOGIN, json=BAD_LOGIN, headers=second)).status == 401


async def test_a_forwarded_for_line_a_proxy_adds_is_read_with_the_clients_own(
    engine: AsyncEngine,
    database_url: str,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
    rate_clock: MonotonicClock,
) -> None:
    """A proxy that adds a header line of its own (HAProxy's ``option forwardfor``) rather
    than appending to the client's: the lines are one list (RFC 9110 §5.3), the proxy's last.
    Reading only the first line took the client's spoofed address as its own."""
    panel = await limited_panel(
        database_url,
        aiohttp_server,
        aiohttp_client,
        rate_clock,
        STELLAR_TRUSTED_PROXIES="127.0.0.1/32",
    )
    browser = await panel.browser()
    statuses = []
    for n in range(8):
        # The client's own line (a new invented address each time), then the proxy's.
        headers = CIMultiDict(
            [("X-Forwarded-For", f"192.0.2.{n + 1}"), ("X-Forwarded-For", "198.51.100.20")]
        )
        statuses.append(
            # The client itself: the test's Browser keeps one value per header name.
            (await browser.client.request("POST", LOGIN, json=BAD_LOGIN, headers=headers)).status
        )
    assert statuses == [401] * 5 + [429] * 3
    # The proxy's line alone names the same client: its bucket is empty.
    alone = {"X-Forwarded-For": "198.51.100.20"}
    assert (await browser.request("POST", LOGIN, json=BAD_LOGIN, headers=alone)).status == 429


@pytest.mark.parametrize(
    "preset", ["authentication", "sensitive", "api", "power", "files", "invitations"]
)
async def test_each_preset_refuses_the_request_after_its_limit(preset: str) -> None:
    clock = MonotonicClock()
    limiter = RateLimiter(MemoryBackend(clock=clock), parse_presets(""))
    policy = limiter.presets[preset]
    for n in range(policy.capacity):
        decision = await limiter.check(preset, "192.0.2.1", "server-1")
        assert decision.allowed
        assert decision.remaining == policy.capacity - n - 1
    refused = await limiter.check(preset, "192.0.2.1", "server-1")
    assert not refused.allowed
    assert refused.headers(0)["Retry-After"] == str(round(policy.window_seconds / policy.capacity))
    clock.advance(policy.window_seconds / policy.capacity)
    assert (await limiter.check(preset, "192.0.2.1", "server-1")).allowed


async def test_ipv6_clients_share_a_bucket_per_64() -> None:
    limiter = RateLimiter(MemoryBackend(clock=MonotonicClock()), parse_presets(""))
    for n in range(5):
        assert (await limiter.check("authentication", f"2001:db8:1:2::{n + 1}")).allowed
    assert not (await limiter.check("authentication", "2001:db8:1:2:ffff::1")).allowed
    assert (await limiter.check("authentication", "2001:db8:1:3::1")).allowed


def address(n: int) -> str:
    return f"10.{n // 65536}.{n // 256 % 256}.{n % 256}"


async def test_a_flood_of_distinct_addresses_cannot_exhaust_memory() -> None:
    clock = MonotonicClock()
    backend = MemoryBackend(max_keys=1000, clock=clock)
    limiter = RateLimiter(backend, parse_presets(""))
    for _ in range(5):
        await limiter.check("authentication", "192.0.2.1")
    for n in range(20_000):
        await limiter.check("api", address(n))
        assert len(backend) <= 1000
    assert len(backend) <= 1000
    assert not (await limiter.check("authentication", "192.0.2.1")).allowed


async def test_a_full_store_refuses_new_keys_and_never_forgets_a_spent_bucket() -> None:
    clock = MonotonicClock()
    backend = MemoryBackend(max_keys=4, clock=clock)
    limiter = RateLimiter(backend, parse_presets(""))
    for _ in range(5):
        await limiter.check("authentication", "192.0.2.1")  # exhausted: 12 s to the next
    for n in range(3):
        assert (await limiter.check("api", address(n))).allowed
    # Full of buckets that still remember spent tokens: a new key fails closed.
    refused = await limiter.check("api", address(99))
    assert not refused.allowed
    assert 0 < refused.retry_after <= 0.61  # when the soonest bucket (api: 100/min) refills
    assert not (await limiter.check("authentication", "192.0.2.1")).allowed
    clock.advance(0.61)  # the api buckets have refilled; the sign-in bucket has not
    for n in range(10, 13):
        assert (await limiter.check("api", address(n))).allowed
    assert not (await limiter.check("authentication", "192.0.2.1")).allowed
    assert len(backend) == 4


async def test_making_room_stays_cheap_and_bounded_under_a_flood() -> None:
    clock = MonotonicClock()
    backend = MemoryBackend(max_keys=100, clock=clock)
    policy = RateLimitPolicy("api", 100, 60.0)
    for n in range(50_000):
        await backend.take(address(n % 150), policy)
        clock.advance(0.001)
    assert len(backend) <= 100
    assert len(backend._refills) <= 4 * 256  # stale refill entries are compacted away


async def test_the_flush_attack_cannot_reopen_an_exhausted_sign_in_limit(
    engine: AsyncEngine,
    database_url: str,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
    rate_clock: MonotonicClock,
) -> None:
    """The review's attack: exhaust the sign-in limit, then make fresh buckets until the
    store evicts the exhausted one, then sign in again."""
    panel = await limited_panel(
        database_url,
        aiohttp_server,
        aiohttp_client,
        rate_clock,
        STELLAR_RATE_LIMIT_MAX_KEYS="100",
        STELLAR_TRUSTED_PROXIES="127.0.0.1/32",
        STELLAR_RATE_LIMITS=ACCOUNT_UNLIMITED,
    )
    backend = panel.server.app[RATE_LIMITER].backend
    assert isinstance(backend, MemoryBackend)
    attacker = await panel.browser()
    me = {"X-Forwarded-For": "203.0.113.7"}
    for _ in range(5):
        assert (await attacker.request("POST", LOGIN, json=BAD_LOGIN, headers=me)).status == 401
    assert (await attacker.request("POST", LOGIN, json=BAD_LOGIN, headers=me)).status == 429

    # Anonymous power requests for invented servers reach only the attacker's own bucket.
    for _ in range(150):
        response = await attacker.request(
            "POST", f"/api/v1/servers/{uuid.uuid4()}/power", json={"action": "start"}, headers=me
        )
        assert response.status in (401, 429)
    # authentication and api, both for 203.0.113.7; the guessed address's own allowance
    assert len(backend) == 3

    # Many addresses fill the store; the newest are refused, nothing spent is forgotten.
    statuses = []
    for n in range(150):
        response = await attacker.request(
            "POST", LOGIN, json=BAD_LOGIN, headers={"X-Forwarded-For": address(n)}
        )
        statuses.append(response.status)
    assert statuses.count(401) == 97
    assert set(statuses[97:]) == {429}
    assert len(backend) == 100
    assert (await attacker.request("POST", LOGIN, json=BAD_LOGIN, headers=me)).status == 429
    rate_clock.advance(61)  # everything has refilled: buckets may be forgotten, new ones admitted
    fresh = {"X-Forwarded-For": "198.51.100.200"}
    assert (await attacker.request("POST", LOGIN, json=BAD_LOGIN, headers=fresh)).status == 401


def test_unknown_or_malformed_presets_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown rate-limit preset"):
        parse_presets("logins=5/60")
    with pytest.raises(ValueError, match="NAME=COUNT/SECONDS"):
        parse_presets("api=many/60")


# --- Redis: shared by several control-plane processes ---------------------------------


@pytest.fixture
async def redis_db() -> AsyncIterator[str]:
    client = redis.from_url(REDIS_URL)
    try:
        await client.flushdb()
    except (OSError, redis.RedisError) as err:
        await client.aclose()
        service_missing(f"Redis not reachable at {REDIS_URL}: {err}")
    yield REDIS_URL
    await client.flushdb()
    await client.aclose()


async def test_redis_backend_counts_and_refills_on_redis_clock(redis_db: str) -> None:
    backend = RedisBackend(redis_db)
    try:
        policy = RateLimitPolicy("sensitive", 3, 0.3)
        decisions = [await backend.take("t:1", policy) for _ in range(4)]
        assert [d.allowed for d in decisions] == [True, True, True, False]
        assert [d.remaining for d in decisions[:3]] == [2, 1, 0]
        assert 0 < decisions[3].retry_after <= 0.1
        await asyncio.sleep(0.12)  # Redis' own clock: there is no clock to inject
        assert (await backend.take("t:1", policy)).allowed
    finally:
        await backend.close()
    limiter = RateLimiter(RedisBackend(redis_db), parse_presets(""))
    try:
        for _ in range(5):
            assert (await limiter.check("authentication", "192.0.2.1")).allowed
        assert not (await limiter.check("authentication", "192.0.2.1")).allowed
        assert (await limiter.check("api", "192.0.2.1")).allowed  # presets never share a key
    finally:
        await limiter.backend.close()


@pytest.fixture
def two_control_planes(redis_db: str, tmp_path: Path) -> Iterator[list[str]]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("STELLAR_")},
        "STELLAR_DATABASE_URL": f"sqlite:///{tmp_path / 'shared.db'}",
        "STELLAR_AUTH_SECRET": AUTH_SECRET,
        "STELLAR_BCRYPT_COST": "10",
        "REDIS_URL": redis_db,
    }
    subprocess.run(
        [sys.executable, "-m", "control_plane", "migrate"], env=env, check=True, capture_output=True
    )
    processes, urls = [], []
    for _ in range(2):
        port = free_port()
        with (tmp_path / f"cp-{port}.log").open("wb") as log:
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "control_plane", "serve"],
                    env={**env, "STELLAR_PORT": str(port)},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        urls.append(f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 30
        for url in urls:
            while True:
                try:
                    with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), 0.5):
                        break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
        yield urls
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=15)


async def test_two_control_planes_sharing_redis_admit_at_most_the_limit_together(
    two_control_planes: list[str],
) -> None:
    async with aiohttp.ClientSession() as session:

        async def attempt(url: str) -> int:
            async with session.post(url + LOGIN, json=BAD_LOGIN) as response:
                return response.status

        statuses = await asyncio.gather(*(attempt(two_control_planes[n % 2]) for n in range(20)))
    assert statuses.count(401) == 5, statuses
    assert statuses.count(429) == 15
