"""Password guessing spread over many addresses: limited per account, the owner's browser
still gets in (the real app, memory buckets on a hand-moved clock, a trusted proxy that lets
each guess come from an address of its own, as a botnet's would)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
from pytest_aiohttp import AiohttpClient, AiohttpServer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from control_plane.db.models import AuditEntry, User
from control_plane.keys import RATE_LIMITER
from control_plane.security import devices
from control_plane.security.rate_limit import MemoryBackend
from tests.integration.control_plane.conftest import AUTH_SECRET
from tests.integration.control_plane.mfa_support import ENCRYPTION_KEYS
from tests.integration.control_plane.test_rate_limits import limited_panel
from tests.support.clocks import MonotonicClock
from tests.support.panel import PASSWORD, Browser, Panel

LOGIN = "/api/v1/auth/login"
VICTIM = "victim@example.org"
WRONG = "not the password at all"
ALLOWANCE = 10  # the sign_in_account preset's default: 10, then one per 90 s


@pytest.fixture
async def panel(
    engine: AsyncEngine,
    database_url: str,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
    rate_clock: MonotonicClock,
) -> Panel:
    panel = await limited_panel(
        database_url,
        aiohttp_server,
        aiohttp_client,
        rate_clock,
        STELLAR_TRUSTED_PROXIES="127.0.0.1/32",
        STELLAR_ENCRYPTION_KEYS=ENCRYPTION_KEYS,
    )
    await panel.create_user(VICTIM)
    return panel


@pytest.fixture
def addresses() -> Iterator[dict[str, str]]:
    """A new client address for every guess: the per-address limit never trips."""
    return ({"X-Forwarded-For": f"203.0.{n // 256}.{n % 256}"} for n in itertools.count(1))


async def guess(
    browser: Browser, addresses: Iterator[dict[str, str]], email: str, password: str
) -> int:
    response = await browser.request(
        "POST", LOGIN, json={"email": email, "password": password}, headers=next(addresses)
    )
    if response.status == 200:
        browser.csrf = (await response.json())["csrf_token"]
    return response.status


@pytest.mark.parametrize("email", [VICTIM, "nobody@example.org"], ids=["account", "no_account"])
async def test_guesses_from_many_addresses_stop_at_the_accounts_allowance(
    panel: Panel, addresses: Iterator[dict[str, str]], rate_clock: MonotonicClock, email: str
) -> None:
    attacker = await panel.browser()
    for _ in range(ALLOWANCE):
        assert await guess(attacker, addresses, email, WRONG) == 401
    refused = await attacker.request(
        "POST", LOGIN, json={"email": email, "password": WRONG}, headers=next(addresses)
    )
    assert refused.status == 429
    error = (await refused.json())["error"]
    assert error["code"] == "rate_limited"
    assert error["message"] == (
        "too many attempts for this account; try again in 90 s, "
        "or sign in from a browser you have signed in with before"
    )
    assert refused.headers["Retry-After"] == "90"
    # Refused before the password is checked: the right one is no oracle (and an address
    # with no account is refused alike, so neither is the refusal).
    assert await guess(attacker, addresses, email, PASSWORD) == 429
    rate_clock.advance(90)
    assert await guess(attacker, addresses, email, WRONG) == 401
    assert await guess(attacker, addresses, email, WRONG) == 429
    async with panel.db() as db:
        reasons = list(
            await db.scalars(
                select(AuditEntry.details["reason"].as_string()).where(
                    AuditEntry.action == "user.login.failed"
                )
            )
        )
    assert reasons.count("too many attempts for this account") == 3


async def test_the_owners_browser_still_signs_in_while_the_account_is_attacked(
    panel: Panel, addresses: Iterator[dict[str, str]]
) -> None:
    owner = await panel.browser()
    await owner.login(VICTIM)
    assert owner.client.session.cookie_jar.filter_cookies(owner.client.make_url("/")).get(
        devices.COOKIE
    )
    await owner.json("POST", "/api/v1/auth/logout", status=204)

    attacker = await panel.browser()
    for _ in range(ALLOWANCE):
        await guess(attacker, addresses, VICTIM, WRONG)
    assert await guess(attacker, addresses, VICTIM, PASSWORD) == 429

    # The browser that signed in before: in, from an address never seen.
    assert await guess(owner, addresses, VICTIM, PASSWORD) == 200
    # Another browser, even with the right password and the owner's own address: not yet.
    stranger = await panel.browser()
    assert await guess(stranger, addresses, VICTIM, PASSWORD) == 429


async def test_a_browser_recognised_for_another_account_or_a_forged_one_is_not_exempt(
    panel: Panel, addresses: Iterator[dict[str, str]]
) -> None:
    await panel.create_user("attacker@example.org")
    attacker = await panel.browser()
    await attacker.login("attacker@example.org")  # recognised, but for their own account
    for _ in range(ALLOWANCE):
        assert await guess(attacker, addresses, VICTIM, WRONG) == 401
    assert await guess(attacker, addresses, VICTIM, WRONG) == 429

    victim_id = await victim_user_id(panel)
    forged = {
        "signed with another secret": devices.issue(
            "another secret of at least 32 chars!", [victim_id]
        ),
        "not a token": "x" * 40,
    }
    for what, token in forged.items():
        browser = await panel.browser()
        browser.client.session.cookie_jar.update_cookies({devices.COOKIE: token})
        assert await guess(browser, addresses, VICTIM, PASSWORD) == 429, what
    genuine = await panel.browser()
    genuine.client.session.cookie_jar.update_cookies(
        {devices.COOKIE: devices.issue(AUTH_SECRET, [victim_id])}
    )
    assert await guess(genuine, addresses, VICTIM, PASSWORD) == 200


async def test_a_recognised_browser_has_an_allowance_of_its_own(
    panel: Panel, addresses: Iterator[dict[str, str]]
) -> None:
    """A recognised browser (say, a laptop stolen with its cookies) guesses no faster than a
    stranger, and spends only its own allowance: the owner's other browsers still get in."""
    laptop, phone = await panel.browser(), await panel.browser()
    for browser in (laptop, phone):
        await browser.login(VICTIM)
        await browser.json("POST", "/api/v1/auth/logout", status=204)
    for _ in range(ALLOWANCE):
        assert await guess(laptop, addresses, VICTIM, WRONG) == 401
    assert await guess(laptop, addresses, VICTIM, PASSWORD) == 429
    assert await guess(phone, addresses, VICTIM, PASSWORD) == 200
    stranger = await panel.browser()
    assert await guess(stranger, addresses, VICTIM, PASSWORD) == 200  # the laptop spent its own


async def test_one_browser_is_recognised_for_each_account_signed_in_with_it(
    panel: Panel, addresses: Iterator[dict[str, str]]
) -> None:
    await panel.create_user("partner@example.org")
    shared = await panel.browser()
    for email in (VICTIM, "partner@example.org"):
        await shared.login(email)
        await shared.json("POST", "/api/v1/auth/logout", status=204)
    attacker = await panel.browser()
    for email in (VICTIM, "partner@example.org"):
        for _ in range(ALLOWANCE + 1):
            await guess(attacker, addresses, email, WRONG)
    for email in (VICTIM, "partner@example.org"):
        assert await guess(shared, addresses, email, PASSWORD) == 200, email
        await shared.json("POST", "/api/v1/auth/logout", status=204)


@pytest.mark.parametrize("taken_back", ["password_change", "administrator"])
async def test_a_browser_recognised_before_the_account_was_taken_back_is_a_stranger_again(
    panel: Panel, addresses: Iterator[dict[str, str]], taken_back: str
) -> None:
    """A laptop stolen with its cookies: once its owner changes the password (or an
    administrator signs the account out everywhere), the laptop guesses against the
    account's allowance like any stranger, not against an allowance of its own; the browser
    that changed the password is recognised anew."""
    laptop, phone = await panel.browser(), await panel.browser()
    await laptop.login(VICTIM)
    await laptop.json("POST", "/api/v1/auth/logout", status=204)
    await phone.login(VICTIM)
    password = PASSWORD
    if taken_back == "password_change":
        password = "a new passphrase, long enough"
        changed = await phone.json(
            "POST",
            "/api/v1/auth/password",
            json={"current_password": PASSWORD, "new_password": password},
        )
        phone.csrf = changed["csrf_token"]
        await phone.json("POST", "/api/v1/auth/logout", status=204)
    else:
        admin = await panel.signed_in("root@example.org", admin=True)
        victim = await victim_user_id(panel)
        await admin.json("DELETE", f"/api/v1/users/{victim}/sessions", status=204)
    # The account's allowance spent (the two first sign-ins took from it too).
    stranger = await panel.browser()
    guesses = 0
    while await guess(stranger, addresses, VICTIM, WRONG) == 401:
        guesses += 1
    assert ALLOWANCE - 2 <= guesses < ALLOWANCE
    assert await guess(laptop, addresses, VICTIM, password) == 429
    if taken_back == "password_change":
        assert await guess(phone, addresses, VICTIM, password) == 200
    else:
        assert await guess(phone, addresses, VICTIM, password) == 429


async def victim_user_id(panel: Panel) -> str:
    async with panel.db() as db:
        return str(await db.scalar(select(User.id).where(User.email == VICTIM)))


# Every route that checks the account's current password, with a body whose password is
# ``password`` (and nothing else wrong): a key or a session guesses through it as well.
def _password_routes(password: str) -> list[tuple[str, str, dict[str, str]]]:
    new = "a new passphrase, long enough"
    return [
        ("POST", "/api/v1/auth/password", {"current_password": password, "new_password": new}),
        (
            "PUT",
            "/api/client/account/password",
            {"current_password": password, "password": new, "password_confirmation": new},
        ),
        (
            "POST",
            "/api/v1/account/email",
            {"email": "new@example.org", "current_password": password},
        ),
        ("POST", "/api/v1/account/2fa/enable", {"password": password, "code": "123456"}),
    ]


@pytest.mark.parametrize("route", range(4), ids=["password", "compat_password", "email", "2fa"])
async def test_a_key_or_session_holder_guesses_the_password_no_faster_than_a_stranger(
    panel: Panel, addresses: Iterator[dict[str, str]], route: int
) -> None:
    """Whoever holds a session or a key (a bot's leaked key, a browser left signed in) must
    not guess the account's password past its allowance through the routes that check it:
    the right one would take the account (a new password; it was 401/403/400 forever)."""
    owner = await panel.browser()
    await owner.login(VICTIM)
    made = await owner.json(
        "POST", "/api/v1/account/api-keys", 201, json={"name": "bot", "scopes": ["read", "write"]}
    )
    if route in (0, 1):
        holder = await panel.browser()
        holder.api_key = made["key"]  # the password routes take a write key
        signed_in = 1
    else:  # the others only a browser session: one copied without the device cookie
        holder = await _session_without_device_cookie(panel)
        signed_in = 2
    method, path, body = _password_routes(WRONG)[route]
    # The sign-ins from browsers not recognised then spent the allowance too.
    for _ in range(ALLOWANCE - signed_in):
        answer = await holder.request(method, path, json=body, headers=next(addresses))
        assert answer.status in (400, 403), await answer.text()
    method, path, body = _password_routes(PASSWORD)[route]
    refused = await holder.request(method, path, json=body, headers=next(addresses))
    assert refused.status == 429, await refused.text()
    assert "too many attempts for this account" in await refused.text()


async def _session_without_device_cookie(panel: Panel) -> Browser:
    """A browser signed in as the victim that the device cookie does not recognise (one that
    signed in and then lost the cookie, as a thief's copy of the session cookie would)."""
    browser = await panel.browser()
    await browser.login(VICTIM)
    jar = browser.client.session.cookie_jar
    session = {c.key: c.value for c in jar if c.key != devices.COOKIE}
    jar.clear()
    jar.update_cookies(session)
    return browser


async def test_a_flood_of_invented_addresses_adds_a_bounded_number_of_buckets(
    panel: Panel, addresses: Iterator[dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each address without an account would otherwise be a bucket of its own in the
    rate-limit store (a memory store full of unrefilled buckets refuses new clients)."""
    monkeypatch.setattr(devices, "UNKNOWN_SLOTS", 8)
    backend = panel.server.app[RATE_LIMITER].backend
    assert isinstance(backend, MemoryBackend)
    attacker = await panel.browser()
    for n in range(200):
        assert await guess(attacker, addresses, f"invented-{n}@example.org", WRONG) in (401, 429)
    accounts = [key for key in backend._buckets if key.startswith("sign_in_account:")]
    assert 1 <= len(accounts) <= 8
