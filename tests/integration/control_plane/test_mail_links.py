"""Mailed links against a real SMTP server: e-mail verification and password reset work
once and expire, the reset ends every session (and says what it did not revoke), and an
unknown address gets the same answer in the same time class."""

from __future__ import annotations

import datetime as dt
import statistics
import time
from collections.abc import AsyncIterator

import pytest
from pytest_aiohttp import AiohttpClient, AiohttpServer
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from control_plane.db.engine import session_factory
from control_plane.db.models import MailToken
from control_plane.db.session import transaction
from control_plane.mail.tokens import token_hash
from control_plane.services.mail_flows import RESET_ALLOWANCE
from tests.integration.control_plane.mail_support import (
    api_of,
    local,
    mail_environment,
    mail_panel,
    register,
    token_of,
)
from tests.support.panel import PASSWORD, Panel
from tests.support.smtp import MailCatcher, smtp_server

NEW_PASSWORD = "a brand new passphrase 2026"
RESET = "/api/v1/auth/password-reset"


@pytest.fixture
async def catcher() -> MailCatcher:
    return MailCatcher()


@pytest.fixture
async def panel(
    engine: AsyncEngine,
    database_url: str,
    catcher: MailCatcher,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
) -> AsyncIterator[Panel]:
    async with (
        smtp_server(catcher) as port,
        mail_panel(mail_environment(database_url, port), aiohttp_server, aiohttp_client) as p,
    ):
        yield p


async def _expire(engine: AsyncEngine, token: str) -> None:
    """Time travel: the token row's expiry is a second ago."""
    async with transaction(session_factory(engine)) as db:
        await db.execute(
            update(MailToken)
            .where(MailToken.token_hash == token_hash(token))
            .values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
        )


async def test_registration_mails_a_verification_link_that_works_once_and_expires(
    panel: Panel, catcher: MailCatcher, engine: AsyncEngine
) -> None:
    browser = await panel.browser()
    session = await register(browser, "newbie@example.org", PASSWORD)
    assert session["user"]["email_verified_at"] is None  # type: ignore[index]
    mail = await catcher.next()
    assert mail.envelope_to == ["newbie@example.org"]
    assert mail.subject == "Confirm your e-mail address"
    link = mail.link()
    assert link in mail.html  # the same link in both parts
    assert local(link).startswith("/verify-email?token=")  # a page, which calls the API
    anyone = await panel.browser()  # the link works without the session
    verified = await anyone.json("GET", api_of(link))
    assert verified["email"] == "newbie@example.org"
    again = await anyone.json("GET", api_of(link), 400)
    assert "invalid, used or expired" in again["error"]["message"]
    me = await browser.json("GET", "/api/v1/auth/session")
    assert me["user"]["email_verified_at"] is not None

    # Expiry: a fresh link whose row is a second past its end does nothing.
    other = await panel.browser()
    await register(other, "late@example.org", PASSWORD)
    late = (await catcher.next()).link()
    await _expire(engine, token_of(late))
    refused = await other.json("GET", api_of(late), 400)
    assert "expired" in refused["error"]["message"]
    assert (await other.json("GET", "/api/v1/auth/session"))["user"]["email_verified_at"] is None
    # A new link replaces it, and the old one stays dead.
    await other.json("POST", "/api/v1/account/email/verification", 202)
    fresh = (await catcher.next()).link()
    assert fresh != late
    await other.json("GET", api_of(fresh))
    await other.json("POST", "/api/v1/account/email/verification", 409)


async def test_email_change_happens_when_the_new_address_is_verified(
    panel: Panel, catcher: MailCatcher
) -> None:
    browser = await panel.signed_in("old@example.org")
    await browser.json(
        "POST",
        "/api/v1/account/email",
        202,
        json={"email": "New@Example.org", "current_password": PASSWORD},
    )
    mails = {m.to: m for m in [await catcher.next(), await catcher.next()]}
    assert "new@example.org" in mails["old@example.org"].text  # the old address is told
    link = mails["new@example.org"].link()
    assert (await browser.json("GET", "/api/v1/auth/session"))["user"]["email"] == (
        "old@example.org"
    )
    await browser.json("GET", api_of(link))
    me = await browser.json("GET", "/api/v1/auth/session")
    assert me["user"]["email"] == "new@example.org"
    assert me["user"]["email_verified_at"] is not None
    wrong = await browser.json(
        "POST",
        "/api/v1/account/email",
        400,
        json={"email": "x@example.org", "current_password": "not my password at all"},
    )
    assert "current password" in wrong["error"]["message"]


@pytest.mark.parametrize("take_back", ["password", "signed out everywhere", "disabled"])
async def test_an_address_change_an_intruder_asked_for_dies_with_the_sessions(
    panel: Panel, catcher: MailCatcher, take_back: str
) -> None:
    """An intruder in victim's session (the password known too) asks to move the account
    to their own address: the link goes to their mailbox. The victim changes the password,
    or an administrator signs the victim out everywhere or disables the account: the link
    must not move the account afterwards (the next step would be a reset to the intruder)."""
    victim = await panel.signed_in("victim@example.org")
    victim_id = (await victim.json("GET", "/api/v1/auth/session"))["user"]["id"]
    await victim.json(
        "POST",
        "/api/v1/account/email",
        202,
        json={"email": "intruder@example.net", "current_password": PASSWORD},
    )
    mails = {m.to: m for m in [await catcher.next(), await catcher.next()]}
    link = mails["intruder@example.net"].link()
    admin = await panel.signed_in("root@example.org", admin=True)
    if take_back == "password":
        await victim.json(
            "POST",
            "/api/v1/auth/password",
            json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        )
    elif take_back == "signed out everywhere":
        await admin.json("DELETE", f"/api/v1/users/{victim_id}/sessions", 204)
    else:
        await admin.json("PATCH", f"/api/v1/users/{victim_id}", json={"disabled": True})
        await admin.json("PATCH", f"/api/v1/users/{victim_id}", json={"disabled": False})
    refused = await (await panel.browser()).json("GET", api_of(link), 400)
    assert "invalid, used or expired" in refused["error"]["message"]
    user = await admin.json("GET", f"/api/v1/users/{victim_id}")
    assert user["email"] == "victim@example.org"


async def test_password_reset_works_once_ends_every_session_and_revokes_nothing_else(
    panel: Panel, catcher: MailCatcher, engine: AsyncEngine
) -> None:
    laptop = await panel.signed_in("reset@example.org")
    phone = await panel.browser()
    await phone.login("reset@example.org")
    created = await laptop.json(
        "POST", "/api/v1/account/api-keys", 201, json={"name": "bot", "scopes": ["read"]}
    )
    anonymous = await panel.browser()
    answer = await anonymous.json("POST", RESET, 202, json={"email": "Reset@Example.org"})
    link = (await catcher.next()).link()
    assert local(link).startswith("/reset-password?token=")
    checked = await anonymous.json("GET", api_of(link))
    assert "confirm" in checked["how"]
    token = token_of(link)

    short = await anonymous.json(
        "POST", RESET + "/confirm", 400, json={"token": token, "new_password": "short"}
    )
    assert "new_password" in str(short["error"])
    await anonymous.json(
        "POST", RESET + "/confirm", json={"token": token, "new_password": NEW_PASSWORD}
    )
    # Every session ended; the old password is dead, the new one works.
    for browser in (laptop, phone):
        assert (await browser.request("GET", "/api/v1/auth/session")).status == 401
    refused = await anonymous.request(
        "POST", "/api/v1/auth/login", json={"email": "reset@example.org", "password": PASSWORD}
    )
    assert refused.status == 401
    await anonymous.login("reset@example.org", NEW_PASSWORD)
    # The API key was not revoked, and the mail says so.
    keyed = await panel.browser()
    keyed.api_key = created["key"]
    await keyed.json("GET", "/api/v1/servers")
    notice = await catcher.next()
    assert notice.subject == "Your password was reset"
    assert "API keys" in notice.text
    assert "not revoked" in notice.text
    # Single use.
    used = await anonymous.json(
        "POST", RESET + "/confirm", 400, json={"token": token, "new_password": NEW_PASSWORD + "!"}
    )
    assert "invalid, used or expired" in used["error"]["message"]
    assert answer == {"message": answer["message"]}

    # Expiry (30 minutes, time-travelled on the row).
    await anonymous.json("POST", RESET, 202, json={"email": "reset@example.org"})
    late = token_of((await catcher.next()).link())
    await _expire(engine, late)
    await anonymous.json("GET", f"{RESET}?token={late}", 400)
    await anonymous.json(
        "POST", RESET + "/confirm", 400, json={"token": late, "new_password": NEW_PASSWORD + "?"}
    )
    await anonymous.login("reset@example.org", NEW_PASSWORD)


async def _timed(panel: Panel, email: str) -> tuple[float, int, object]:
    browser = await panel.browser()
    started = time.perf_counter()
    response = await browser.request("POST", RESET, json={"email": email})
    elapsed = time.perf_counter() - started
    return elapsed, response.status, await response.json()


async def test_unknown_address_gets_the_same_answer_in_the_same_time_class(
    panel: Panel, catcher: MailCatcher
) -> None:
    await panel.create_user("known@example.org")
    known: list[float] = []
    unknown: list[float] = []
    for round_ in range(7):
        for email, times in (
            ("known@example.org", known),
            (f"nobody{round_}@example.org", unknown),
        ):
            elapsed, status, body = await _timed(panel, email)
            assert status == 202
            assert body == {
                "message": "if an account uses that address, a link to reset its password is "
                "on its way; it works once, for 30 minutes"
            }
            times.append(elapsed)
    ratio = statistics.median(unknown) / statistics.median(known)
    # Loose on purpose (a shared, loaded machine): the same class, not the same microsecond.
    assert 0.25 < ratio < 4, (known, unknown)
    # Only the known address was mailed, its allowance of times (each newer link retired the
    # older; past the allowance nothing is mailed, in the same time class).
    count, _window = RESET_ALLOWANCE
    for _ in range(count):
        assert (await catcher.next()).to == "known@example.org"
