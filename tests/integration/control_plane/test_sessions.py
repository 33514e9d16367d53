"""Sign-in, sessions and CSRF against the real app, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import uuid
from unittest import mock

import pytest
from sqlalchemy import select

from control_plane.db.engine import session_factory
from control_plane.db.leases import LeaseKeeper
from control_plane.db.models import AuditEntry, Session
from control_plane.db.session import transaction
from control_plane.keys import ENGINE
from control_plane.observability.retention import run_retention
from control_plane.security import passwords
from tests.support.panel import PASSWORD, Panel

LOGIN = "/api/v1/auth/login"


async def audit_actions(panel: Panel) -> list[str]:
    async with transaction(session_factory(panel.server.app[ENGINE])) as db:
        return [e.action for e in await db.scalars(select(AuditEntry).order_by(AuditEntry.id))]


async def test_login_sets_an_httponly_samesite_cookie_and_returns_the_csrf_token(
    panel: Panel,
) -> None:
    await panel.create_user("alice@example.org")
    browser = await panel.browser()
    response = await browser.request(
        "POST", LOGIN, json={"email": "Alice@Example.org", "password": PASSWORD}
    )
    assert response.status == 200
    body = await response.json()
    assert body["user"]["email"] == "alice@example.org"
    assert len(body["csrf_token"]) >= 43
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("stellar_session=")
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert "Path=/" in cookie
    token = cookie.split(";")[0].split("=", 1)[1]
    assert len(token) >= 43  # 256 bits, base64url
    async with transaction(session_factory(panel.server.app[ENGINE])) as db:
        stored = list(await db.scalars(select(Session.token_hash)))
    assert stored
    assert token not in stored


async def test_unknown_user_and_wrong_password_get_the_same_answer(panel: Panel) -> None:
    await panel.create_user("bob@example.org")
    browser = await panel.browser()
    wrong = await browser.request(
        "POST", LOGIN, json={"email": "bob@example.org", "password": "x" * 20}
    )
    unknown = await browser.request(
        "POST", LOGIN, json={"email": "nobody@example.org", "password": "x" * 20}
    )
    malformed = await browser.request(
        "POST", LOGIN, json={"email": "not-an-email", "password": "x" * 20}
    )
    assert wrong.status == unknown.status == malformed.status == 401
    assert await wrong.json() == await unknown.json() == await malformed.json()
    assert "Set-Cookie" not in wrong.headers
    actions = await audit_actions(panel)
    assert actions.count("user.login.failed") == 3


@pytest.mark.real_password_cost
async def test_unknown_user_login_runs_bcrypt(panel: Panel) -> None:
    browser = await panel.browser()
    with mock.patch.object(passwords, "_check_sync", wraps=passwords._check_sync) as check:
        response = await browser.request(
            "POST", LOGIN, json={"email": "ghost@example.org", "password": "whatever-password"}
        )
    assert response.status == 401
    assert check.call_count == 1
    hashed = check.call_args.args[1]
    assert hashed.startswith("$2b$10$")


async def test_long_and_non_ascii_passwords_work_in_full(panel: Panel) -> None:
    long_password = "ü" * 50  # 100 bytes in UTF-8, over bcrypt's 72
    await panel.create_user("long@example.org", password=long_password)
    browser = await panel.browser()
    await browser.login("long@example.org", long_password)
    other = await panel.browser()
    response = await other.request(
        "POST", LOGIN, json={"email": "long@example.org", "password": "ü" * 49 + "u"}
    )
    assert response.status == 401


async def test_session_token_changes_at_every_login(panel: Panel) -> None:
    await panel.create_user("carol@example.org")
    browser = await panel.browser()
    await browser.login("carol@example.org")
    first = browser.client.session.cookie_jar.filter_cookies(browser.client.make_url("/"))[
        "stellar_session"
    ].value
    await browser.login("carol@example.org")  # the old session sends its CSRF token along
    second = browser.client.session.cookie_jar.filter_cookies(browser.client.make_url("/"))[
        "stellar_session"
    ].value
    assert first != second
    stale = await panel.browser()
    stale.client.session.cookie_jar.update_cookies({"stellar_session": first})
    assert (await stale.request("GET", "/api/v1/auth/session")).status == 401


async def test_old_token_is_dead_after_logout(panel: Panel) -> None:
    browser = await panel.signed_in("dave@example.org")
    token = browser.client.session.cookie_jar.filter_cookies(browser.client.make_url("/"))[
        "stellar_session"
    ].value
    await browser.json("POST", "/api/v1/auth/logout", status=204)
    replay = await panel.browser()
    replay.client.session.cookie_jar.update_cookies({"stellar_session": token})
    response = await replay.request("GET", "/api/v1/auth/session")
    assert response.status == 401
    assert "user.logout" in await audit_actions(panel)


async def test_all_sessions_end_when_the_password_changes(panel: Panel) -> None:
    laptop = await panel.signed_in("erin@example.org")
    phone = await panel.browser()
    await phone.login("erin@example.org")
    new_password = "another long passphrase 2"
    body = await laptop.json(
        "POST",
        "/api/v1/auth/password",
        json={"current_password": PASSWORD, "new_password": new_password},
    )
    laptop.csrf = body["csrf_token"]
    assert (await phone.request("GET", "/api/v1/auth/session")).status == 401
    assert (await laptop.request("GET", "/api/v1/auth/session")).status == 200  # a new session here
    assert (await laptop.request("GET", "/api/v1/auth/sessions")).status == 200
    sessions = (await laptop.json("GET", "/api/v1/auth/sessions"))["data"]
    assert len(sessions) == 1
    assert sessions[0]["current"] is True
    fresh = await panel.browser()
    await fresh.login("erin@example.org", new_password)


async def test_wrong_current_password_is_refused_and_keeps_the_password(panel: Panel) -> None:
    browser = await panel.signed_in("frank@example.org")
    await browser.json(
        "POST",
        "/api/v1/auth/password",
        status=403,
        json={"current_password": "not the password", "new_password": "a brand new passphrase"},
    )
    await (await panel.browser()).login("frank@example.org")
    assert "user.password.change_failed" in await audit_actions(panel)


async def test_disabling_a_user_ends_their_sessions(panel: Panel) -> None:
    admin = await panel.signed_in("root@example.org", admin=True)
    user = await panel.signed_in("gina@example.org")
    me = await user.json("GET", "/api/v1/auth/session")
    await admin.json("PATCH", f"/api/v1/users/{me['user']['id']}", json={"disabled": True})
    assert (await user.request("GET", "/api/v1/auth/session")).status == 401
    visitor = await panel.browser()
    # The password's holder is told why (403); a wrong password gets the usual 401.
    refused = await visitor.json(
        "POST", LOGIN, 403, json={"email": "gina@example.org", "password": PASSWORD}
    )
    assert refused["error"]["message"] == "this account is disabled; ask an administrator"
    wrong = await visitor.json(
        "POST", LOGIN, 401, json={"email": "gina@example.org", "password": PASSWORD + "?"}
    )
    assert wrong["error"]["message"] == "invalid e-mail or password"


async def test_unsafe_cookie_request_without_or_with_wrong_csrf_is_refused(panel: Panel) -> None:
    browser = await panel.signed_in("hank@example.org")
    browser.send_csrf = False
    missing = await browser.request("POST", "/api/v1/auth/logout")
    wrong = await browser.request("POST", "/api/v1/auth/logout", headers={"X-CSRF-Token": "x" * 43})
    assert missing.status == wrong.status == 403
    assert (await missing.json())["error"]["code"] == "forbidden"
    assert (await browser.request("GET", "/api/v1/auth/session")).status == 200  # still signed in
    assert (await audit_actions(panel)).count("auth.csrf.rejected") == 2


async def test_users_can_list_and_revoke_their_sessions(panel: Panel) -> None:
    laptop = await panel.signed_in("ivy@example.org")
    phone = await panel.browser()
    await phone.login("ivy@example.org")
    sessions = (await laptop.json("GET", "/api/v1/auth/sessions"))["data"]
    assert len(sessions) == 2
    other = next(s for s in sessions if not s["current"])
    await laptop.json("DELETE", f"/api/v1/auth/sessions/{other['id']}", status=204)
    assert (await phone.request("GET", "/api/v1/auth/session")).status == 401
    intruder = await panel.signed_in("jack@example.org")
    mine = next(s for s in sessions if s["current"])
    await intruder.json("DELETE", f"/api/v1/auth/sessions/{mine['id']}", status=404)
    assert (await laptop.request("GET", "/api/v1/auth/session")).status == 200


async def age_sessions(panel: Panel, **shift: dt.timedelta) -> None:
    async with transaction(session_factory(panel.server.app[ENGINE])) as db:
        for session in await db.scalars(select(Session)):
            for column, delta in shift.items():
                setattr(session, column, getattr(session, column) - delta)


async def test_idle_session_expires(panel: Panel) -> None:
    browser = await panel.signed_in("kim@example.org")
    await age_sessions(panel, last_seen_at=dt.timedelta(minutes=119))
    assert (await browser.request("GET", "/api/v1/auth/session")).status == 200
    # That request counted as activity; two idle hours after it, the session is gone.
    await age_sessions(panel, last_seen_at=dt.timedelta(minutes=121))
    assert (await browser.request("GET", "/api/v1/auth/session")).status == 401


async def test_session_expires_at_its_absolute_limit_even_when_active(panel: Panel) -> None:
    browser = await panel.signed_in("lee@example.org")
    await age_sessions(panel, expires_at=dt.timedelta(hours=168))
    assert (await browser.request("GET", "/api/v1/auth/session")).status == 401


async def test_registration_is_closed_by_default(panel: Panel) -> None:
    browser = await panel.browser()
    await browser.json(
        "POST",
        "/api/v1/auth/register",
        status=403,
        json={"email": "new@example.org", "password": "a long enough password"},
    )


async def test_ended_sessions_are_not_listed_and_the_retention_job_deletes_them(
    panel: Panel,
) -> None:
    """A browser that never comes back leaves its row: neither the user's list, the account
    page nor an administrator shows it as a place they are signed in, and the retention job
    deletes it; a live session stays."""
    laptop = await panel.signed_in("max@example.org")
    idle, old = await panel.browser(), await panel.browser()
    await idle.login("max@example.org")
    await old.login("max@example.org")
    listed = (await laptop.json("GET", "/api/v1/auth/sessions"))["data"]
    assert len(listed) == 3
    others = [s["id"] for s in listed if not s["current"]]
    now = dt.datetime.now(dt.UTC)
    async with transaction(session_factory(panel.server.app[ENGINE])) as db:
        idle_row, old_row = [await db.get(Session, uuid.UUID(id_)) for id_ in others]
        assert idle_row is not None
        assert old_row is not None
        idle_row.last_seen_at = now - dt.timedelta(minutes=121)
        old_row.expires_at = now - dt.timedelta(seconds=1)
    listed = (await laptop.json("GET", "/api/v1/auth/sessions"))["data"]
    assert [s["current"] for s in listed] == [True]
    page = await laptop.request("GET", "/account/sessions")
    assert (await page.text()).count("<tr") == 2  # the header and this session
    user_id = (await laptop.json("GET", "/api/v1/auth/session"))["user"]["id"]
    admin = await panel.signed_in("root@example.org", admin=True)
    seen = (await admin.json("GET", f"/api/v1/users/{user_id}/sessions"))["data"]
    assert [s["id"] for s in seen] == [listed[0]["id"]]

    leases = LeaseKeeper(panel.server.app[ENGINE])  # (the app runs no background jobs)
    try:
        await run_retention(panel.server.app, leases)
    finally:
        await leases.close()
    async with transaction(session_factory(panel.server.app[ENGINE])) as db:
        left = list(
            await db.scalars(
                select(Session.id).where(
                    Session.id.in_(
                        [uuid.UUID(s["id"]) for s in listed] + [uuid.UUID(id_) for id_ in others]
                    )
                )
            )
        )
    assert left == [uuid.UUID(listed[0]["id"])]
    for browser in (idle, old):
        assert (await browser.request("GET", "/api/v1/auth/session")).status == 401
    assert (await laptop.request("GET", "/api/v1/auth/session")).status == 200
