"""Passkeys through the real app with a software ES256 authenticator."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from aiohttp import ClientResponse
from pytest_aiohttp import AiohttpClient, AiohttpServer
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from control_plane.db.engine import session_factory
from control_plane.db.models import AuditEntry, OAuthIdentity, User
from control_plane.db.session import transaction
from control_plane.keys import ENGINE
from control_plane.services import oauth as oauth_service
from tests.integration.control_plane.mfa_support import (
    enrol,
    mfa_panel,
    oathtool,
    start_login,
)
from tests.integration.control_plane.soft_authenticator import SoftAuthenticator
from tests.support.clocks import WallClock
from tests.support.panel import Browser, Panel

RP_ID = "localhost"
ORIGIN = "http://localhost:8000"
EMAIL = "alice@example.org"
PASSKEY_ENV = {"STELLAR_WEBAUTHN_RP_ID": RP_ID, "STELLAR_WEBAUTHN_ORIGIN": ORIGIN}


@pytest.fixture
async def panel(
    engine: AsyncEngine,
    database_url: str,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
    wall_clock: WallClock,
) -> Panel:
    return await mfa_panel(
        database_url, aiohttp_server, aiohttp_client, wall_clock, env=PASSKEY_ENV
    )


def authenticator() -> SoftAuthenticator:
    return SoftAuthenticator(rp_id=RP_ID, origin=ORIGIN)


async def register(
    browser: Browser, device: SoftAuthenticator, *, origin: str | None = None, status: int = 201
) -> Any:
    options = (await browser.json("POST", "/api/v1/account/passkeys/options"))["options"]
    assert options["rp"]["id"] == RP_ID
    assert options["authenticatorSelection"]["residentKey"] == "required"
    credential = device.create(options, origin=origin)
    return await browser.json(
        "POST",
        "/api/v1/account/passkeys",
        status=status,
        json={"name": "laptop", "credential": credential},
    )


async def passkey_sign_in(
    browser: Browser, device: SoftAuthenticator, **kwargs: Any
) -> ClientResponse:
    options = (await browser.json("POST", "/api/v1/auth/passkey/options"))["options"]
    assert "allowCredentials" not in options or options["allowCredentials"] == []
    return await browser.request(
        "POST", "/api/v1/auth/passkey", json={"credential": device.get(options, **kwargs)}
    )


async def audit_rows(panel: Panel, action: str) -> list[AuditEntry]:
    async with transaction(session_factory(panel.server.app[ENGINE])) as db:
        return list(await db.scalars(select(AuditEntry).where(AuditEntry.action == action)))


async def audit(panel: Panel, action: str) -> list[dict[str, Any]]:
    return [row.details for row in await audit_rows(panel, action)]


async def test_register_list_rename_and_delete(panel: Panel) -> None:
    alice = await panel.signed_in(EMAIL)
    created = await register(alice, authenticator())
    assert created["name"] == "laptop"
    listed = await alice.json("GET", "/api/v1/account/passkeys")
    assert [p["id"] for p in listed["data"]] == [created["id"]]
    path = f"/api/v1/account/passkeys/{created['id']}"
    renamed = await alice.json("PATCH", path, json={"name": "YubiKey"})
    assert renamed["name"] == "YubiKey"
    await alice.json("DELETE", path, status=204)
    assert (await alice.json("GET", "/api/v1/account/passkeys"))["data"] == []


async def test_a_passkey_signs_in_completely_even_for_a_2fa_user(
    panel: Panel, wall_clock: WallClock
) -> None:
    alice = await panel.signed_in(EMAIL)
    await enrol(alice, wall_clock)
    device = authenticator()
    await register(alice, device)
    browser = await panel.browser()
    response = await passkey_sign_in(browser, device)
    body = await response.json()
    assert response.status == 200, body
    assert body["user"]["email"] == EMAIL
    assert body["mfa_pending"] is False
    browser.csrf = body["csrf_token"]
    await browser.json("GET", "/api/v1/auth/sessions")
    assert (await audit(panel, "user.login.succeeded"))[-1] == {"method": "passkey"}


async def test_a_passkey_signs_in_while_wrong_codes_have_locked_the_account(
    panel: Panel, wall_clock: WallClock
) -> None:
    alice = await panel.signed_in(EMAIL)
    secret, _codes = await enrol(alice, wall_clock)
    device = authenticator()
    await register(alice, device)
    guesser = await panel.browser()
    await start_login(guesser, EMAIL)
    for _ in range(5):
        await guesser.json("POST", "/api/v1/auth/2fa", status=401, json={"code": "999999"})
    refused = await guesser.request(
        "POST", "/api/v1/auth/2fa", json={"code": oathtool(secret, wall_clock.now)}
    )
    assert refused.status == 429
    # The lock is on guessable codes; a passkey is not one, so its owner still gets in.
    response = await passkey_sign_in(await panel.browser(), device)
    assert response.status == 200, await response.text()


async def test_a_counter_that_goes_back_is_refused_and_audited(panel: Panel) -> None:
    alice = await panel.signed_in(EMAIL)
    device = authenticator()
    created = await register(alice, device)
    assert (await passkey_sign_in(await panel.browser(), device)).status == 200
    assert (await passkey_sign_in(await panel.browser(), device)).status == 200
    # A clone of the authenticator, copied when its counter was 1.
    device.counter = 1
    response = await passkey_sign_in(await panel.browser(), device, advance=False)
    assert response.status == 401
    regressions = await audit(panel, "user.passkey.counter_regression")
    assert regressions == [{"reason": "signature counter 1 is not above 2"}]
    failed = (await audit_rows(panel, "user.login.failed"))[-1]
    assert failed.details["method"] == "passkey"
    assert (failed.target_type, failed.target_id) == ("passkey", created["id"])


@pytest.mark.parametrize("origin", ["https://evil.example.org", "http://localhost:8001"])
async def test_another_origin_is_refused(panel: Panel, origin: str) -> None:
    alice = await panel.signed_in(EMAIL)
    await register(alice, authenticator(), origin=origin, status=400)
    device = authenticator()
    await register(alice, device)
    response = await passkey_sign_in(await panel.browser(), device, origin=origin)
    assert response.status == 401
    assert "origin" in (await audit(panel, "user.login.failed"))[-1]["reason"]


async def test_a_challenge_is_bound_to_its_browser_and_used_once(panel: Panel) -> None:
    alice = await panel.signed_in(EMAIL)
    device = authenticator()
    await register(alice, device)
    browser = await panel.browser()
    options = (await browser.json("POST", "/api/v1/auth/passkey/options"))["options"]
    assertion = device.get(options)
    other = await panel.browser()
    refused = await other.request("POST", "/api/v1/auth/passkey", json={"credential": assertion})
    assert refused.status == 401
    accepted = await browser.request("POST", "/api/v1/auth/passkey", json={"credential": assertion})
    assert accepted.status == 200
    replay = await panel.browser()
    again = await replay.request("POST", "/api/v1/auth/passkey", json={"credential": assertion})
    assert again.status == 401


async def test_the_last_way_to_sign_in_cannot_be_deleted(panel: Panel) -> None:
    alice = await panel.signed_in(EMAIL)
    created = await register(alice, authenticator())
    async with transaction(session_factory(panel.server.app[ENGINE])) as db:
        await db.execute(update(User).where(User.email == EMAIL).values(password_hash=None))
    await alice.json("DELETE", f"/api/v1/account/passkeys/{created['id']}", status=409)


async def test_an_admin_removes_a_stolen_passkey_and_its_sessions_end(panel: Panel) -> None:
    """A user's laptop with a passkey is stolen: the thief signs in with it. An administrator
    removes the user's passkeys: the thief's session ends and the passkey signs in no more;
    the user's password still works. An API key the thief made meanwhile stays (the route
    says so); disabling the account refuses it on its next request."""
    alice = await panel.signed_in(EMAIL)
    alice_id = (await alice.json("GET", "/api/v1/auth/session"))["user"]["id"]
    stolen, spare = authenticator(), authenticator()
    await register(alice, stolen)
    await register(alice, spare)
    thief = await panel.browser()
    signed_in = await passkey_sign_in(thief, stolen)
    assert signed_in.status == 200
    thief.csrf = (await signed_in.json())["csrf_token"]
    made = await thief.json(
        "POST", "/api/v1/account/api-keys", 201, json={"name": "mine", "scopes": ["read"]}
    )
    thiefs_key = await panel.browser()
    thiefs_key.api_key = made["key"]

    admin = await panel.signed_in("root@example.org", admin=True)
    path = f"/api/v1/users/{alice_id}/passkeys"
    # Only administrators, not for their own, and a user that exists.
    await alice.json("DELETE", path, status=403)
    admin_id = (await admin.json("GET", "/api/v1/auth/session"))["user"]["id"]
    own = await admin.json("DELETE", f"/api/v1/users/{admin_id}/passkeys", status=409)
    assert "account page" in own["error"]["message"]
    await admin.json(
        "DELETE", "/api/v1/users/00000000-0000-4000-8000-000000000000/passkeys", status=404
    )
    await admin.json("DELETE", path, status=204)

    for browser in (thief, alice):  # every session of the user ended
        assert (await browser.request("GET", "/api/v1/auth/sessions")).status == 401
    for device in (stolen, spare):
        refused = await passkey_sign_in(await panel.browser(), device)
        assert refused.status == 401, await refused.text()
    await (await panel.browser()).login(EMAIL)  # the password still signs in
    nothing = await admin.json("DELETE", path, status=409)
    assert "no passkey" in nothing["error"]["message"]
    assert await audit(panel, "user.passkeys.removed") == [{"email": EMAIL, "removed": 2}]
    await thiefs_key.json("GET", "/api/v1/servers")
    await admin.json("PATCH", f"/api/v1/users/{alice_id}", json={"disabled": True})
    assert (await thiefs_key.request("GET", "/api/v1/servers")).status == 401


async def test_an_admin_does_not_remove_a_users_only_way_to_sign_in(panel: Panel) -> None:
    alice = await panel.signed_in(EMAIL)
    alice_id = (await alice.json("GET", "/api/v1/auth/session"))["user"]["id"]
    device = authenticator()
    await register(alice, device)
    async with transaction(session_factory(panel.server.app[ENGINE])) as db:
        await db.execute(update(User).where(User.email == EMAIL).values(password_hash=None))
    admin = await panel.signed_in("root@example.org", admin=True)
    refused = await admin.json("DELETE", f"/api/v1/users/{alice_id}/passkeys", status=409)
    assert "only way to sign in" in refused["error"]["message"]
    assert "disable the account" in refused["error"]["message"]
    # Nothing was removed: the passkey signs in as before, and the session goes on.
    assert (await passkey_sign_in(await panel.browser(), device)).status == 200
    await alice.json("GET", "/api/v1/auth/sessions")
    # Disabled, the account refuses its passkeys already: the message says so.
    await admin.json("PATCH", f"/api/v1/users/{alice_id}", json={"disabled": True})
    disabled = await admin.json("DELETE", f"/api/v1/users/{alice_id}/passkeys", status=409)
    assert "disabled: it refuses them already" in disabled["error"]["message"]


async def test_a_passkey_satisfies_required_2fa(
    engine: AsyncEngine,
    database_url: str,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
    wall_clock: WallClock,
) -> None:
    env = {**PASSKEY_ENV, "STELLAR_REQUIRE_2FA": "everyone"}
    panel = await mfa_panel(database_url, aiohttp_server, aiohttp_client, wall_clock, env=env)
    alice = await panel.signed_in(EMAIL)
    await alice.json("GET", "/api/v1/auth/sessions", status=403)
    await register(alice, authenticator())
    await alice.json("GET", "/api/v1/auth/sessions")


async def methods_left(panel: Panel) -> int:
    async with transaction(session_factory(panel.server.app[ENGINE])) as db:
        user = await db.scalar(select(User).where(User.email == EMAIL))
        assert user is not None
        return await oauth_service.sign_in_methods(db, user)


async def without_password_but(panel: Panel, *, passkeys: int) -> tuple[Browser, str, list[str]]:
    """Alice, signed in, with ``passkeys`` passkeys and a linked Discord account and no
    password: each removal below takes one of her ways to sign in."""
    alice = await panel.signed_in(EMAIL)
    alice_id = (await alice.json("GET", "/api/v1/auth/session"))["user"]["id"]
    ids = [(await register(alice, authenticator()))["id"] for _ in range(passkeys)]
    async with transaction(session_factory(panel.server.app[ENGINE])) as db:
        await db.execute(update(User).where(User.email == EMAIL).values(password_hash=None))
        db.add(OAuthIdentity(user_id=uuid.UUID(alice_id), provider="discord", subject="4711"))
    assert await methods_left(panel) == passkeys + 1
    return alice, alice_id, ids


async def test_removals_at_the_same_moment_leave_a_way_to_sign_in(panel: Panel) -> None:
    """An attacker in a victim's session (or two tabs racing) sends every removal at once:
    each, alone, sees another way to sign in left; together they must not take all of them."""
    alice, _alice_id, ids = await without_password_but(panel, passkeys=2)
    statuses = await asyncio.gather(
        *(alice.request("DELETE", f"/api/v1/account/passkeys/{id_}") for id_ in ids),
        alice.request("POST", "/api/v1/account/oauth/unlink", json={"provider": "discord"}),
    )
    assert sorted(s.status for s in statuses) == [204, 204, 409]
    assert await methods_left(panel) == 1


async def test_an_admins_removal_and_the_users_own_at_once_leave_a_way_to_sign_in(
    panel: Panel,
) -> None:
    alice, alice_id, _ids = await without_password_but(panel, passkeys=1)
    admin = await panel.signed_in("root@example.org", admin=True)
    statuses = await asyncio.gather(
        admin.request("DELETE", f"/api/v1/users/{alice_id}/passkeys"),
        alice.request("POST", "/api/v1/account/oauth/unlink", json={"provider": "discord"}),
    )
    # One of the two goes through. The other is refused by the count (409) — or the user's,
    # when the admin's removal ended her sessions first, as signed out (401).
    pair = (statuses[0].status, statuses[1].status)
    assert pair in {(204, 409), (204, 401), (409, 204)}, pair
    assert await methods_left(panel) == 1


async def test_one_passkey_deleted_twice_at_once(panel: Panel) -> None:
    alice, _alice_id, ids = await without_password_but(panel, passkeys=2)
    path = f"/api/v1/account/passkeys/{ids[0]}"
    statuses = await asyncio.gather(*(alice.request("DELETE", path) for _ in range(2)))
    assert sorted(s.status for s in statuses) == [204, 404]
    assert await methods_left(panel) == 2
