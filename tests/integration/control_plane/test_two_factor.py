"""TOTP two-factor authentication through the real app, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from pytest_aiohttp import AiohttpClient, AiohttpServer
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from control_plane.db.engine import session_factory
from control_plane.db.models import AuditEntry, Session, TotpCredential
from control_plane.db.session import transaction
from control_plane.keys import ENGINE
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


@pytest.fixture
async def panel(
    engine: AsyncEngine,
    database_url: str,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
    wall_clock: WallClock,
) -> Panel:
    return await mfa_panel(database_url, aiohttp_server, aiohttp_client, wall_clock)


def session_cookie(browser: Browser) -> str | None:
    cookies = browser.client.session.cookie_jar.filter_cookies(browser.client.make_url("/"))
    morsel = cookies.get("stellar_session")
    return morsel.value if morsel else None


async def audit_rows(panel: Panel, action: str) -> list[AuditEntry]:
    async with transaction(session_factory(panel.server.app[ENGINE])) as db:
        return list(await db.scalars(select(AuditEntry).where(AuditEntry.action == action)))


async def enrolled_user(panel: Panel, wall_clock: WallClock) -> tuple[str, list[str]]:
    browser = await panel.signed_in(EMAIL)
    return await enrol(browser, wall_clock)


async def test_setup_returns_uri_and_qr_and_stores_the_secret_encrypted_but_inactive(
    panel: Panel, wall_clock: WallClock
) -> None:
    browser = await panel.signed_in(EMAIL)
    setup = await browser.json("POST", "/api/v1/account/2fa/setup")
    assert setup["otpauth_uri"].startswith("otpauth://totp/")
    assert f"secret={setup['secret']}" in setup["otpauth_uri"]
    assert setup["qr_code"].startswith("data:image/svg+xml")
    async with transaction(session_factory(panel.server.app[ENGINE])) as db:
        row = await db.scalar(select(TotpCredential))
        assert row is not None
        assert row.secret.startswith("v1:t1:")
        assert setup["secret"] not in row.secret
        assert row.enabled_at is None
    status = await browser.json("GET", "/api/v1/account/2fa")
    assert status == {
        "enabled": False,
        "setup_pending": True,
        "recovery_codes_left": 0,
        "required": False,
    }
    # Not active until enabled: a password still signs in completely.
    body = await (await panel.browser()).login(EMAIL)
    assert "mfa_required" not in body


async def test_enable_needs_the_current_password_and_a_valid_code(
    panel: Panel, wall_clock: WallClock
) -> None:
    browser = await panel.signed_in(EMAIL)
    secret = (await browser.json("POST", "/api/v1/account/2fa/setup"))["secret"]
    good = oathtool(secret, wall_clock.now)
    wrong_code = str((int(good) + 1) % 1_000_000).zfill(6)
    for body in (
        {"code": good, "password": "not the password!"},
        {"code": wrong_code, "password": PASSWORD},
    ):
        await browser.json("POST", "/api/v1/account/2fa/enable", status=403, json=body)
    assert len(await audit_rows(panel, "user.2fa.enable_failed")) == 2
    enabled = await browser.json(
        "POST", "/api/v1/account/2fa/enable", json={"code": good, "password": PASSWORD}
    )
    codes = enabled["recovery_codes"]
    assert len(codes) == 10
    assert len(set(codes)) == 10
    status = await browser.json("GET", "/api/v1/account/2fa")
    assert status["enabled"] is True
    assert status["recovery_codes_left"] == 10
    # A second setup cannot replace an active authenticator.
    await browser.json("POST", "/api/v1/account/2fa/setup", status=409)


async def test_password_then_code_gives_a_full_session_with_a_new_token(
    panel: Panel, wall_clock: WallClock
) -> None:
    secret, _codes = await enrolled_user(panel, wall_clock)
    browser = await panel.browser()
    pending = await start_login(browser, EMAIL)
    assert pending["methods"] == ["totp", "recovery"]
    expires = dt.datetime.fromisoformat(pending["expires_at"])
    assert expires <= dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5, seconds=5)
    pending_token = session_cookie(browser)
    # The pending session can say who it is, but nothing else.
    session = await browser.json("GET", "/api/v1/auth/session")
    assert session["mfa_pending"] is True
    await browser.json("GET", "/api/v1/auth/sessions", status=403)
    await browser.json("GET", "/api/v1/servers", status=403)

    full = await browser.json(
        "POST", SECOND_FACTOR, json={"code": oathtool(secret, wall_clock.now)}
    )
    browser.csrf = full["csrf_token"]
    assert full["mfa_pending"] is False
    assert session_cookie(browser) not in (None, pending_token)
    await browser.json("GET", "/api/v1/auth/sessions")
    succeeded = await audit_rows(panel, "user.login.succeeded")
    assert succeeded[-1].details == {"method": "password+totp"}
    # The pending token is gone, not upgraded.
    stale = await panel.browser()
    stale.client.session.cookie_jar.update_cookies({"stellar_session": pending_token or ""})
    await stale.json("GET", "/api/v1/auth/session", status=401)


async def test_a_replayed_code_is_refused_and_audited(panel: Panel, wall_clock: WallClock) -> None:
    secret, _codes = await enrolled_user(panel, wall_clock)
    code = oathtool(secret, wall_clock.now)
    first = await panel.browser()
    await start_login(first, EMAIL)
    await first.json("POST", SECOND_FACTOR, json={"code": code})
    # Same code, same 30-second step, another sign-in: refused.
    second = await panel.browser()
    await start_login(second, EMAIL)
    await second.json("POST", SECOND_FACTOR, status=401, json={"code": code})
    failed = await audit_rows(panel, "user.login.failed")
    assert [row.details for row in failed] == [{"method": "totp"}]
    # So is the code of the step before, which was still in the drift window.
    previous = oathtool(secret, wall_clock.now - 30)
    await second.json("POST", SECOND_FACTOR, status=401, json={"code": previous})
    wall_clock.advance(30)
    await second.json("POST", SECOND_FACTOR, json={"code": oathtool(secret, wall_clock.now)})


async def test_the_enabling_code_cannot_be_replayed_at_sign_in(
    panel: Panel, wall_clock: WallClock
) -> None:
    browser = await panel.signed_in(EMAIL)
    secret = (await browser.json("POST", "/api/v1/account/2fa/setup"))["secret"]
    code = oathtool(secret, wall_clock.now)
    await browser.json(
        "POST", "/api/v1/account/2fa/enable", json={"code": code, "password": PASSWORD}
    )
    other = await panel.browser()
    await start_login(other, EMAIL)
    await other.json("POST", SECOND_FACTOR, status=401, json={"code": code})


async def test_a_recovery_code_works_once(panel: Panel, wall_clock: WallClock) -> None:
    _secret, codes = await enrolled_user(panel, wall_clock)
    first = await panel.browser()
    await start_login(first, EMAIL)
    typed = codes[0].upper().replace("-", " ")
    await first.json("POST", SECOND_FACTOR, json={"code": typed})
    second = await panel.browser()
    await start_login(second, EMAIL)
    await second.json("POST", SECOND_FACTOR, status=401, json={"code": codes[0]})
    assert [r.details for r in await audit_rows(panel, "user.login.failed")] == [
        {"method": "recovery"}
    ]
    await second.json("POST", SECOND_FACTOR, json={"code": codes[1]})
    status = await second.json("GET", "/api/v1/account/2fa")
    assert status["recovery_codes_left"] == 8


async def test_pending_sign_in_cannot_be_finished_from_another_cookie_jar(
    panel: Panel, wall_clock: WallClock
) -> None:
    secret, _codes = await enrolled_user(panel, wall_clock)
    victim = await panel.browser()
    pending = await start_login(victim, EMAIL)
    # The attacker has everything but the HttpOnly cookie: the response body and a code.
    attacker = await panel.browser()
    attacker.csrf = pending["csrf_token"]
    code = oathtool(secret, wall_clock.now)
    await attacker.json("POST", SECOND_FACTOR, status=401, json={"code": code})
    # The attacker's own password-less browser has no pending state to finish either.
    assert session_cookie(attacker) is None
    # The code was not spent by the refused attempt: the victim finishes.
    await victim.json("POST", SECOND_FACTOR, json={"code": code})


async def test_a_pending_sign_in_expires(panel: Panel, wall_clock: WallClock) -> None:
    secret, _codes = await enrolled_user(panel, wall_clock)
    browser = await panel.browser()
    await start_login(browser, EMAIL)
    async with transaction(session_factory(panel.server.app[ENGINE])) as db:
        row = await db.scalar(select(Session).where(Session.mfa_pending.is_(True)))
        assert row is not None
        lifetime = row.expires_at - row.created_at
        assert dt.timedelta(minutes=4) < lifetime <= dt.timedelta(minutes=5)
        # Five minutes later.
        await db.execute(
            update(Session)
            .where(Session.id == row.id)
            .values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
        )
    await browser.json(
        "POST", SECOND_FACTOR, status=401, json={"code": oathtool(secret, wall_clock.now)}
    )


async def test_the_password_is_checked_before_anything_reveals_2fa(
    panel: Panel, wall_clock: WallClock
) -> None:
    await enrolled_user(panel, wall_clock)
    await panel.create_user("plain@example.org")

    async def attempt(email: str, password: str) -> tuple[int, Any, bool]:
        browser = await panel.browser()
        response = await browser.request(
            "POST", "/api/v1/auth/login", json={"email": email, "password": password}
        )
        return response.status, await response.json(), "Set-Cookie" in response.headers

    answers = [
        await attempt(EMAIL, "wrong password!!"),
        await attempt("plain@example.org", "wrong password!!"),
        await attempt("nobody@example.org", "wrong password!!"),
    ]
    assert answers[0] == answers[1] == answers[2]
    assert answers[0][0] == 401
    assert "mfa" not in str(answers[0][1]).lower()


async def test_recovery_codes_can_be_replaced_with_password_and_code(
    panel: Panel, wall_clock: WallClock
) -> None:
    browser = await panel.signed_in(EMAIL)
    secret, old = await enrol(browser, wall_clock)
    path = "/api/v1/account/2fa/recovery-codes"
    code = oathtool(secret, wall_clock.now)
    await browser.json("POST", path, status=403, json={"code": code, "password": "nope nope nope"})
    fresh = (await browser.json("POST", path, json={"code": code, "password": PASSWORD}))[
        "recovery_codes"
    ]
    assert not set(fresh) & set(old)
    signing_in = await panel.browser()
    await start_login(signing_in, EMAIL)
    await signing_in.json("POST", SECOND_FACTOR, status=401, json={"code": old[2]})
    await signing_in.json("POST", SECOND_FACTOR, json={"code": fresh[2]})


async def test_disabling_needs_password_and_code_then_password_alone_signs_in(
    panel: Panel, wall_clock: WallClock
) -> None:
    browser = await panel.signed_in(EMAIL)
    secret, _codes = await enrol(browser, wall_clock)
    path = "/api/v1/account/2fa/disable"
    await browser.json("POST", path, status=403, json={"code": "000000", "password": PASSWORD})
    await browser.json(
        "POST",
        path,
        status=403,
        json={"code": oathtool(secret, wall_clock.now), "password": "wrong password!"},
    )
    assert len(await audit_rows(panel, "user.2fa.disable_failed")) == 2
    await browser.json(
        "POST",
        path,
        status=204,
        json={"code": oathtool(secret, wall_clock.now), "password": PASSWORD},
    )
    body = await (await panel.browser()).login(EMAIL)
    assert "mfa_required" not in body


async def test_api_keys_cannot_manage_two_factor_settings(panel: Panel) -> None:
    browser = await panel.signed_in(EMAIL)
    key = await browser.json(
        "POST",
        "/api/v1/account/api-keys",
        status=201,
        json={"name": "bot", "scopes": ["read", "write"]},
    )
    bot = await panel.browser()
    bot.api_key = key["key"]
    await bot.json("POST", "/api/v1/account/2fa/setup", status=403)


@pytest.mark.parametrize("policy", ["admins", "everyone"])
async def test_required_2fa_leaves_only_enrolment_open_until_enrolled(
    engine: AsyncEngine,
    database_url: str,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
    wall_clock: WallClock,
    policy: str,
) -> None:
    panel = await mfa_panel(
        database_url,
        aiohttp_server,
        aiohttp_client,
        wall_clock,
        env={"STELLAR_REQUIRE_2FA": policy},
    )
    admin = await panel.signed_in("root@example.org", admin=True)
    user = await panel.signed_in("user@example.org")
    assert (await admin.json("GET", "/api/v1/auth/session"))["must_enrol"] is True
    await admin.json("GET", "/api/v1/users", status=403)
    await admin.json("GET", "/api/v1/auth/sessions", status=403)
    assert (await admin.json("GET", "/api/v1/account/2fa"))["required"] is True
    user_list = await user.request("GET", "/api/v1/auth/sessions")
    assert user_list.status == (403 if policy == "everyone" else 200)

    await enrol(admin, wall_clock)
    await admin.json("GET", "/api/v1/users")
    assert (await admin.json("GET", "/api/v1/auth/session"))["must_enrol"] is False


async def test_wrong_codes_are_rate_limited_by_the_authentication_preset(
    engine: AsyncEngine,
    database_url: str,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
    wall_clock: WallClock,
) -> None:
    rate_clock = MonotonicClock()
    panel = await mfa_panel(
        database_url, aiohttp_server, aiohttp_client, wall_clock, rate_clock=rate_clock
    )
    secret, _codes = await enrolled_user(panel, wall_clock)
    browser = await panel.browser()
    rate_clock.advance(120)  # the enrolment's tokens are back
    await start_login(browser, EMAIL)
    rate_clock.advance(60)
    wrong = str((int(oathtool(secret, wall_clock.now)) + 500_000) % 1_000_000).zfill(6)
    for _ in range(5):
        await browser.json("POST", SECOND_FACTOR, status=401, json={"code": wrong})
    refused = await browser.request("POST", SECOND_FACTOR, json={"code": wrong})
    assert refused.status == 429
    assert "Retry-After" in refused.headers
    # Even the right code waits for the bucket.
    right = await browser.request(
        "POST", SECOND_FACTOR, json={"code": oathtool(secret, wall_clock.now)}
    )
    assert right.status == 429
    assert len(await audit_rows(panel, "user.login.failed")) == 5
