"""Second-factor guessing is limited per account, across addresses, sessions and replicas.

The attacker holds alice's password and spreads TOTP guesses over many client addresses (the
app sits behind a trusted proxy that names each client in X-Forwarded-For), so the per-address
rate limits never fire. The account's own allowance does.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from itertools import count
from typing import Any

import pytest
from aiohttp import ClientResponse
from pytest_aiohttp import AiohttpClient, AiohttpServer
from sqlalchemy.ext.asyncio import AsyncEngine

from control_plane.security import totp
from tests.integration.control_plane.mfa_support import (
    enrol,
    mfa_panel,
    oathtool,
    start_login,
)
from tests.support.clocks import MonotonicClock, WallClock
from tests.support.panel import PASSWORD, Browser, Panel

EMAIL = "alice@example.org"
SECOND_FACTOR = "/api/v1/auth/2fa"
BEHIND_PROXY = {
    "STELLAR_TRUSTED_PROXIES": "127.0.0.1/32",
    # The guesser here knows the password: what is measured is the second factor's lockout,
    # not the password sign-ins' allowance per account (test_password_guessing.py).
    "STELLAR_RATE_LIMITS": "sign_in_account=1000000/60",
}
MINUTE = 60.0


@dataclass
class BrowserAt(Browser):
    """A browser the trusted proxy in front of the app reports at ``address``."""

    address: str = "127.0.0.1"

    async def request(self, method: str, path: str, **kwargs: Any) -> ClientResponse:
        headers = {"X-Forwarded-For": self.address, **kwargs.pop("headers", {})}
        return await super().request(method, path, headers=headers, **kwargs)


class Addresses:
    """A fresh client address for every attempt: per-address limits never see a repeat."""

    def __init__(self) -> None:
        self._numbers = count(1)
        self.used: list[str] = []

    def next(self) -> str:
        n = next(self._numbers)
        self.used.append(f"203.0.{n // 250}.{n % 250 + 1}")
        return self.used[-1]


@pytest.fixture
async def panel(
    engine: AsyncEngine,
    database_url: str,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
    wall_clock: WallClock,
    rate_clock: MonotonicClock,
) -> Panel:
    """The real app with the default per-address rate limits, behind a trusted proxy."""
    return await mfa_panel(
        database_url,
        aiohttp_server,
        aiohttp_client,
        wall_clock,
        rate_clock=rate_clock,
        env=BEHIND_PROXY,
    )


async def at(panel: Panel, address: str) -> BrowserAt:
    return BrowserAt(await panel.make_client(panel.server), address=address)


def wrong_code(secret: str, unix_time: float) -> str:
    """A six-digit code that no step in the accepted window produces."""
    now = totp.step_at(unix_time)
    valid = {totp.code_at_step(secret, step) for step in range(now - 2, now + 3)}
    return next(c for c in (f"{n:06d}" for n in range(123_456, 10**6)) if c not in valid)


async def enrolled_alice(panel: Panel, wall_clock: WallClock) -> tuple[str, str, BrowserAt]:
    """alice with TOTP on; her id, secret, and an admin's browser to read the audit trail."""
    alice_id = await panel.create_user(EMAIL)
    browser = await at(panel, "192.0.2.10")
    await browser.login(EMAIL)
    secret, _codes = await enrol(browser, wall_clock)
    await panel.create_user("root@example.org", admin=True)
    admin = await at(panel, "192.0.2.20")
    await admin.login("root@example.org")
    return alice_id, secret, admin


async def guess(panel: Panel, address: str, code: str) -> ClientResponse:
    """From a new address: alice's password, then ``code`` as her second factor."""
    browser = await at(panel, address)
    await start_login(browser, EMAIL)
    return await browser.request("POST", SECOND_FACTOR, json={"code": code})


async def alice_audit(admin: Browser, alice_id: str, action: str) -> list[dict[str, Any]]:
    """What the audit trail holds against alice's account, oldest first (an admin's view)."""
    page = await admin.json(
        "GET",
        f"/api/v1/audit?target_type=user&target_id={alice_id}&action={action}&per_page=100",
    )
    return list(reversed(page["data"]))


async def test_guesses_spread_over_many_addresses_lock_the_account_and_the_owner_sees_it(
    panel: Panel, wall_clock: WallClock, rate_clock: MonotonicClock
) -> None:
    alice_id, secret, admin = await enrolled_alice(panel, wall_clock)
    addresses = Addresses()
    for _ in range(5):
        response = await guess(panel, addresses.next(), wrong_code(secret, wall_clock.now))
        assert response.status == 401, await response.text()

    # The sixth guess, and then even the right code, each from an address never seen before.
    for code in (wrong_code(secret, wall_clock.now), oathtool(secret, wall_clock.now)):
        refused = await guess(panel, addresses.next(), code)
        assert refused.status == 429, await refused.text()
        assert 14 * MINUTE < int(refused.headers["Retry-After"]) <= 15 * MINUTE
        error = (await refused.json())["error"]
        assert error["code"] == "second_factor_locked"
        assert "too many wrong" in error["message"]

    # alice's trail: each failure with its address, the lock as an event of its own, and the
    # refusals while locked.
    failed = await alice_audit(admin, alice_id, "user.login.failed")
    assert [(e["actor_id"], e["ip"]) for e in failed] == [(alice_id, a) for a in addresses.used]
    assert [e["details"] for e in failed] == [{"method": "totp"}] * 5 + [
        {"method": "totp", "reason": "second_factor_locked"}
    ] * 2
    [locked] = await alice_audit(admin, alice_id, "user.2fa.locked")
    assert locked["ip"] == addresses.used[4]
    assert locked["details"]["failures"] == 5
    assert locked["details"]["window_seconds"] == 15 * MINUTE

    # A quarter of an hour later alice signs in from home.
    wall_clock.advance(15 * MINUTE)
    rate_clock.advance(15 * MINUTE)
    home = await at(panel, "198.51.100.7")
    await start_login(home, EMAIL)
    full = await home.json("POST", SECOND_FACTOR, json={"code": oathtool(secret, wall_clock.now)})
    assert full["user"]["email"] == EMAIL


async def test_parallel_guesses_from_many_addresses_get_the_allowance_and_no_more(
    panel: Panel, wall_clock: WallClock
) -> None:
    _alice_id, secret, _admin = await enrolled_alice(panel, wall_clock)
    addresses = Addresses()
    browsers = []
    for _ in range(12):
        browser = await at(panel, addresses.next())
        await start_login(browser, EMAIL)
        browsers.append(browser)
    code = wrong_code(secret, wall_clock.now)
    responses = await asyncio.gather(
        *(b.request("POST", SECOND_FACTOR, json={"code": code}) for b in browsers)
    )
    statuses = sorted(r.status for r in responses)
    assert statuses == [401] * 5 + [429] * 7


async def test_a_successful_sign_in_does_not_reset_someone_elses_failures(
    panel: Panel, wall_clock: WallClock, rate_clock: MonotonicClock
) -> None:
    _alice_id, secret, _admin = await enrolled_alice(panel, wall_clock)
    addresses = Addresses()
    for _ in range(3):
        assert (
            await guess(panel, addresses.next(), wrong_code(secret, wall_clock.now))
        ).status == 401
    # alice signs in meanwhile, mistyping once first: her own typo is forgiven, the attacker's
    # three failures are not.
    home = await at(panel, "198.51.100.7")
    await start_login(home, EMAIL)
    await home.json(
        "POST", SECOND_FACTOR, status=401, json={"code": wrong_code(secret, wall_clock.now)}
    )
    await home.json("POST", SECOND_FACTOR, json={"code": oathtool(secret, wall_clock.now)})
    wall_clock.advance(30)
    for _ in range(2):
        assert (
            await guess(panel, addresses.next(), wrong_code(secret, wall_clock.now))
        ).status == 401
    refused = await guess(panel, addresses.next(), oathtool(secret, wall_clock.now))
    assert refused.status == 429


async def test_the_daily_allowance_outlasts_the_quarter_hour(
    panel: Panel, wall_clock: WallClock, rate_clock: MonotonicClock
) -> None:
    _alice_id, secret, _admin = await enrolled_alice(panel, wall_clock)
    addresses = Addresses()
    for _round in range(2):
        for _ in range(5):
            response = await guess(panel, addresses.next(), wrong_code(secret, wall_clock.now))
            assert response.status == 401
        assert (await guess(panel, addresses.next(), "111111")).status == 429
        wall_clock.advance(15 * MINUTE)
    # Ten failures within a day: refused until the first of them is a day old.
    refused = await guess(panel, addresses.next(), oathtool(secret, wall_clock.now))
    assert refused.status == 429
    retry_after = int(refused.headers["Retry-After"])
    assert 23 * 60 * MINUTE < retry_after <= 24 * 60 * MINUTE - 30 * MINUTE + 1
    wall_clock.advance(retry_after)
    rate_clock.advance(retry_after)
    response = await guess(panel, addresses.next(), oathtool(secret, wall_clock.now))
    assert response.status == 200, await response.text()


async def test_codes_on_the_account_pages_share_the_accounts_allowance(
    panel: Panel, wall_clock: WallClock, rate_clock: MonotonicClock
) -> None:
    alice_id, secret, admin = await enrolled_alice(panel, wall_clock)
    # alice is signed in (a full session), and so, say, is someone with her password.
    browser = await at(panel, "198.51.100.7")
    await start_login(browser, EMAIL)
    full = await browser.json(
        "POST", SECOND_FACTOR, json={"code": oathtool(secret, wall_clock.now)}
    )
    browser.csrf = full["csrf_token"]
    wall_clock.advance(30)
    for n in range(5):
        browser.address = f"198.51.100.{20 + n}"
        await browser.json(
            "POST",
            "/api/v1/account/2fa/disable",
            status=403,
            json={"code": wrong_code(secret, wall_clock.now), "password": PASSWORD},
        )
    browser.address = "198.51.100.40"
    refused = await browser.request(
        "POST",
        "/api/v1/account/2fa/disable",
        json={"code": oathtool(secret, wall_clock.now), "password": PASSWORD},
    )
    assert refused.status == 429
    # Sign-in codes are refused too: it is one allowance per account.
    assert (await guess(panel, "203.0.113.9", oathtool(secret, wall_clock.now))).status == 429
    [locked] = await alice_audit(admin, alice_id, "user.2fa.locked")
    assert locked["ip"] == "198.51.100.24"
    assert len(await alice_audit(admin, alice_id, "user.2fa.disable_failed")) == 6
    status = await browser.json("GET", "/api/v1/account/2fa")
    assert status["enabled"] is True


async def test_the_lock_holds_on_another_replica_and_after_a_restart(
    engine: AsyncEngine,
    database_url: str,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
    wall_clock: WallClock,
    rate_clock: MonotonicClock,
) -> None:
    # Two apps on one database, each with its own in-memory rate limiter (no Redis): two
    # replicas, or one app before and after a restart.
    first, second = [
        await mfa_panel(
            database_url,
            aiohttp_server,
            aiohttp_client,
            wall_clock,
            rate_clock=MonotonicClock(),
            env=BEHIND_PROXY,
        )
        for _ in range(2)
    ]
    _alice_id, secret, _admin = await enrolled_alice(first, wall_clock)
    addresses = Addresses()
    for n in range(5):
        replica = (first, second)[n % 2]
        response = await guess(replica, addresses.next(), wrong_code(secret, wall_clock.now))
        assert response.status == 401
    await first.server.close()
    refused = await guess(second, addresses.next(), oathtool(secret, wall_clock.now))
    assert refused.status == 429
