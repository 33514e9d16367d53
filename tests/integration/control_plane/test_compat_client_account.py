"""Contract of Pterodactyl's account routes (``/api/client/account/…``) over ours, on both
databases: e-mail and password changes, client API keys and two-factor, with our rules
(account security from a browser session only, the password checked, a code to turn 2FA
off, audit) and Pterodactyl's status codes and shapes."""

from __future__ import annotations

import pytest
from pytest_aiohttp import AiohttpClient, AiohttpServer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from control_plane.db.engine import session_factory
from control_plane.db.models import AuditEntry
from control_plane.db.session import transaction
from control_plane.keys import ENGINE
from tests.integration.control_plane.mfa_support import mfa_panel, oathtool
from tests.support.clocks import WallClock
from tests.support.compat import pterodactyl_key
from tests.support.panel import PASSWORD, Browser, Panel

ACCOUNT = "/api/client/account"
KEYS = ACCOUNT + "/api-keys"
TWO_FACTOR = ACCOUNT + "/two-factor"
NEW_PASSWORD = "a much longer new passphrase"


@pytest.fixture
async def panel(
    engine: AsyncEngine,
    database_url: str,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
    wall_clock: WallClock,
) -> Panel:
    """The real app with encryption keys (2FA secrets are sealed) and a hand-moved clock."""
    return await mfa_panel(database_url, aiohttp_server, aiohttp_client, wall_clock)


async def audited(panel: Panel, action: str) -> int:
    async with transaction(session_factory(panel.server.app[ENGINE])) as db:
        rows = await db.scalars(select(AuditEntry.id).where(AuditEntry.action == action))
        return len(list(rows))


def refused_for_keys(body: dict[str, list[dict[str, str]]]) -> None:
    error = body["errors"][0]
    assert error["code"] == "AccessDeniedHttpException"
    assert "browser session" in error["detail"]


async def test_client_keys_are_made_listed_and_revoked_from_a_session(panel: Panel) -> None:
    alice = await panel.signed_in("alice@example.org")
    made = await alice.json(
        "POST", KEYS, json={"description": "discord bot", "allowed_ips": ["127.0.0.1"]}
    )
    assert made["object"] == "api_key"
    attributes = made["attributes"]
    identifier = attributes["identifier"]
    assert identifier.startswith("ptlc_")
    assert len(identifier) == 16
    assert attributes["description"] == "discord bot"
    assert attributes["allowed_ips"] == ["127.0.0.1/32"]
    assert attributes["last_used_at"] is None
    secret = made["meta"]["secret_token"]
    assert len(secret) == 48
    assert secret.startswith(identifier)
    bot = await panel.browser()
    bot.api_key = secret
    me = await bot.json("GET", ACCOUNT)
    assert me["attributes"]["email"] == "alice@example.org"
    # Our own stl_ keys are not Pterodactyl's account keys: only ptlc_ ones are listed.
    await alice.json(
        "POST", "/api/v1/account/api-keys", status=201, json={"name": "ours", "scopes": ["read"]}
    )
    listed = await bot.json("GET", KEYS)
    assert [k["attributes"]["identifier"] for k in listed["data"]] == [identifier]
    assert "secret_token" not in str(listed)
    # The key may look, not manage keys (ours decide: a leaked key cannot entrench itself).
    refused_for_keys(await bot.json("POST", KEYS, status=403, json={"description": "more"}))
    refused_for_keys(await bot.json("DELETE", f"{KEYS}/{identifier}", status=403))
    # Another user cannot revoke it: not found, and it still works.
    bob = await panel.signed_in("bob@example.org")
    hidden = await bob.json("DELETE", f"{KEYS}/{identifier}", status=404)
    assert hidden["errors"][0]["code"] == "NotFoundHttpException"
    await bot.json("GET", ACCOUNT)
    response = await alice.request("DELETE", f"{KEYS}/{identifier}")
    assert response.status == 204
    await bot.json("GET", ACCOUNT, status=401)
    await alice.json("DELETE", f"{KEYS}/{identifier}", status=404)
    assert await audited(panel, "api_key.created") == 2
    assert await audited(panel, "api_key.revoked") == 1


async def test_key_input_is_checked(panel: Panel) -> None:
    alice = await panel.signed_in("alice@example.org")
    for body, field, rule in [
        ({"description": "x", "allowed_ips": ["not an address"]}, "allowed_ips", "ip"),
        ({"description": "x" * 65}, "description", "max"),
        ({}, "description", "required"),
        ({"description": "x", "scopes": ["admin"]}, "scopes", "prohibited"),
    ]:
        refused = await alice.json("POST", KEYS, status=422, json=body)
        assert refused["errors"][0]["meta"] == {"source_field": field, "rule": rule}, body


async def test_email_change_needs_a_session_and_the_password(panel: Panel) -> None:
    alice = await panel.signed_in("alice@example.org")
    bot = await pterodactyl_key(panel, alice, "client")
    body = {"email": "alice@example.com", "password": PASSWORD}
    refused_for_keys(await bot.json("PUT", f"{ACCOUNT}/email", status=403, json=body))
    wrong = await alice.json(
        "PUT", f"{ACCOUNT}/email", status=400, json={**body, "password": "not my password"}
    )
    assert wrong["errors"][0]["code"] == "InvalidPasswordProvidedException"
    assert await audited(panel, "user.email.change_failed") == 1
    response = await alice.request("PUT", f"{ACCOUNT}/email", json=body)
    assert response.status == 204
    me = await bot.json("GET", ACCOUNT)
    assert me["attributes"]["email"] == "alice@example.com"
    bad = await alice.json("PUT", f"{ACCOUNT}/email", status=422, json={"email": "x@y.z"})
    assert bad["errors"][0]["meta"] == {"source_field": "password", "rule": "required"}


async def test_password_change_checks_the_current_one_and_our_rules(panel: Panel) -> None:
    alice = await panel.signed_in("alice@example.org")
    path = f"{ACCOUNT}/password"
    change = {
        "current_password": PASSWORD,
        "password": NEW_PASSWORD,
        "password_confirmation": NEW_PASSWORD,
    }
    unconfirmed = await alice.json(
        "PUT", path, status=422, json={**change, "password_confirmation": "something else"}
    )
    assert unconfirmed["errors"][0]["meta"] == {"source_field": "password", "rule": "confirmed"}
    short = await alice.json(
        "PUT",
        path,
        status=422,
        json={**change, "password": "short", "password_confirmation": "short"},
    )
    assert short["errors"][0]["meta"] == {"source_field": "password", "rule": "min"}
    wrong = await alice.json(
        "PUT", path, status=400, json={**change, "current_password": "not my password"}
    )
    assert wrong["errors"][0]["code"] == "InvalidPasswordProvidedException"
    assert await audited(panel, "user.password.change_failed") == 1
    reader = await pterodactyl_key(panel, alice, "client", ["read"])
    await reader.json("PUT", path, status=403, json=change)
    other = await panel.browser()
    await other.login("alice@example.org")
    response = await alice.request("PUT", path, json=change)
    assert response.status == 204
    # Every other session ended; this browser got a new one.
    await other.json("GET", "/api/v1/auth/session", status=401)
    await alice.json("GET", "/api/v1/auth/session")
    relogin = await panel.browser()
    await relogin.login("alice@example.org", NEW_PASSWORD)
    # A write key may change it too, as on our own route (with the current password).
    writer = await pterodactyl_key(panel, relogin, "client")
    back = {
        "current_password": NEW_PASSWORD,
        "password": PASSWORD + "!",
        "password_confirmation": PASSWORD + "!",
    }
    response = await writer.request("PUT", path, json=back)
    assert response.status == 204


async def test_two_factor_from_a_session_with_the_password_and_a_code(
    panel: Panel, wall_clock: WallClock
) -> None:
    alice = await panel.signed_in("alice@example.org")
    bot = await pterodactyl_key(panel, alice, "client")
    refused_for_keys(await bot.json("GET", TWO_FACTOR, status=403))
    # A GET that starts an enrolment: it needs the CSRF header, as our POST does.
    forged = await alice.json("GET", TWO_FACTOR, status=403)
    assert "X-CSRF-Token" in forged["errors"][0]["detail"]
    csrf = {"X-CSRF-Token": str(alice.csrf)}
    setup = await alice.json("GET", TWO_FACTOR, headers=csrf)
    secret = setup["data"]["secret"]
    assert setup["data"]["image_url_data"].startswith("otpauth://totp/")
    assert f"secret={secret}" in setup["data"]["image_url_data"]
    code = oathtool(secret, wall_clock.now)
    # A key cannot turn it on even with the password and a right code.
    refused_for_keys(
        await bot.json("POST", TWO_FACTOR, status=403, json={"code": code, "password": PASSWORD})
    )
    missing = await alice.json("POST", TWO_FACTOR, status=422, json={"code": code})
    assert missing["errors"][0]["meta"] == {"source_field": "password", "rule": "required"}
    wrong = await alice.json(
        "POST", TWO_FACTOR, status=400, json={"code": code, "password": "not my password"}
    )
    assert wrong["errors"][0]["code"] == "BadRequestHttpException"
    bad_code = await alice.json(
        "POST", TWO_FACTOR, status=400, json={"code": "000000", "password": PASSWORD}
    )
    assert bad_code["errors"][0]["code"] == "BadRequestHttpException"
    enabled = await alice.json("POST", TWO_FACTOR, json={"code": code, "password": PASSWORD})
    assert enabled["object"] == "recovery_tokens"
    tokens = enabled["attributes"]["tokens"]
    assert len(tokens) >= 8
    assert len(set(tokens)) == len(tokens)
    wall_clock.advance(30)
    again = await alice.json("GET", TWO_FACTOR, status=400, headers=csrf)
    assert again["errors"][0]["detail"] == (
        "Two-factor authentication is already enabled on this account."
    )
    # Off: Pterodactyl's password alone is not enough here; a code is needed too.
    only_password = await alice.json(
        "POST", f"{TWO_FACTOR}/disable", status=422, json={"password": PASSWORD}
    )
    assert only_password["errors"][0]["meta"] == {"source_field": "code", "rule": "required"}
    code = oathtool(secret, wall_clock.now)
    refused_for_keys(
        await bot.json(
            "POST", f"{TWO_FACTOR}/disable", status=403, json={"password": PASSWORD, "code": code}
        )
    )
    await alice.json(
        "POST", f"{TWO_FACTOR}/disable", status=400, json={"password": "nope", "code": code}
    )
    response = await alice.request(
        "POST", f"{TWO_FACTOR}/disable", json={"password": PASSWORD, "code": code}
    )
    assert response.status == 204
    status = await alice.json("GET", "/api/v1/account/2fa")
    assert status["enabled"] is False
    # The newer versions' DELETE does the same (a recovery token works as the code).
    wall_clock.advance(30)
    setup = await alice.json("GET", TWO_FACTOR, headers=csrf)
    code = oathtool(setup["data"]["secret"], wall_clock.now)
    enabled = await alice.json("POST", TWO_FACTOR, json={"code": code, "password": PASSWORD})
    recovery = enabled["attributes"]["tokens"][0]
    response = await alice.request(
        "DELETE", TWO_FACTOR, json={"password": PASSWORD, "code": recovery}
    )
    assert response.status == 204
    assert await audited(panel, "user.2fa.enabled") == 2
    assert await audited(panel, "user.2fa.disabled") == 2
    assert await audited(panel, "user.2fa.enable_failed") == 2


async def test_nothing_is_served_to_an_application_key(panel: Panel) -> None:
    admin = await panel.signed_in("root@example.org", admin=True)
    application: Browser = await pterodactyl_key(panel, admin, "application")
    for method, path in [("GET", KEYS), ("PUT", f"{ACCOUNT}/password"), ("GET", TWO_FACTOR)]:
        refused = await application.json(method, path, status=403, json={})
        assert refused["errors"][0]["code"] == "AccessDeniedHttpException"
