"""OAuth 2.0 / OIDC sign-in against a local fake provider issuing real signed ID tokens."""

from __future__ import annotations

import base64
import hashlib
import time
import urllib.parse
from typing import Any

import pytest
from aiohttp import ClientResponse
from pytest_aiohttp import AiohttpClient, AiohttpServer
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from control_plane.db.engine import session_factory
from control_plane.db.models import AuditEntry, User
from control_plane.db.session import transaction
from control_plane.keys import ENGINE
from tests.integration.control_plane.fake_oauth import FakeProvider, ProviderUser
from tests.integration.control_plane.mfa_support import (
    enrol,
    mfa_panel,
    oathtool,
)
from tests.support.clocks import WallClock
from tests.support.panel import Browser, Panel

CALLBACK = "/api/v1/auth/oauth/callback"
# The redirect URI registered with the provider: the panel's page, which calls CALLBACK.
CALLBACK_PAGE = "/oauth/callback"
START = "/api/v1/auth/oauth/start"
LINK = "/api/v1/account/oauth/link"
EMAIL = "alice@example.org"
PROVIDERS = ["google", "github", "discord"]
EXPECTED_REASON = {
    "bad signature": "Signature verification failed",
    "wrong aud": "Audience doesn't match",
    "wrong iss": "Invalid issuer",
    "expired": "Signature has expired",
    "wrong nonce": "nonce",
    "no nonce": "nonce",
}


@pytest.fixture
async def fake(aiohttp_server: AiohttpServer) -> FakeProvider:
    provider = FakeProvider()
    server = await aiohttp_server(provider.app())
    provider.base_url = str(server.make_url("")).rstrip("/")
    return provider


async def make_panel(
    database_url: str,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
    wall_clock: WallClock,
    fake: FakeProvider,
    **env: str,
) -> Panel:
    settings = {**fake.env(), **env}
    return await mfa_panel(database_url, aiohttp_server, aiohttp_client, wall_clock, env=settings)


@pytest.fixture
async def panel(
    engine: AsyncEngine,
    database_url: str,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
    wall_clock: WallClock,
    fake: FakeProvider,
) -> Panel:
    return await make_panel(database_url, aiohttp_server, aiohttp_client, wall_clock, fake)


async def callback(browser: Browser, query: dict[str, str]) -> ClientResponse:
    return await browser.request("GET", CALLBACK + "?" + urllib.parse.urlencode(query))


async def flow(
    browser: Browser, fake: FakeProvider, provider: str, start: str = START
) -> ClientResponse:
    """Start, approve at the provider, come back: the callback's response."""
    started = await browser.json("POST", start, json={"provider": provider})
    return await callback(browser, fake.authorize(started["authorize_url"]))


async def link(browser: Browser, fake: FakeProvider, provider: str) -> dict[str, Any]:
    response = await flow(browser, fake, provider, start=LINK)
    body = await response.json()
    assert response.status == 200, body
    return dict(body)


async def audit(panel: Panel, action: str) -> list[dict[str, Any]]:
    async with transaction(session_factory(panel.server.app[ENGINE])) as db:
        rows = await db.scalars(select(AuditEntry).where(AuditEntry.action == action))
        return [row.details for row in rows]


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_linked_provider_account_signs_in_with_pkce(
    panel: Panel, fake: FakeProvider, provider: str
) -> None:
    alice = await panel.signed_in(EMAIL)
    linked = await link(alice, fake, provider)
    assert linked["linked"]["provider"] == provider
    identities = await alice.json("GET", "/api/v1/account/oauth")
    assert [i["provider"] for i in identities["data"]] == [provider]

    browser = await panel.browser()
    started = await browser.json("POST", START, json={"provider": provider})
    cookie = browser.client.session.cookie_jar.filter_cookies(browser.client.make_url("/"))
    assert "stellar_oauth" in cookie
    params = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(started["authorize_url"]).query))
    assert params["redirect_uri"].endswith(CALLBACK_PAGE)
    assert ("nonce" in params) is (provider == "google")
    response = await callback(browser, fake.authorize(started["authorize_url"]))
    body = await response.json()
    assert response.status == 200, body
    assert body["user"]["email"] == EMAIL
    browser.csrf = body["csrf_token"]
    await browser.json("GET", "/api/v1/auth/sessions")
    # The verifier the panel sent is the one behind the S256 challenge it asked with.
    verifier = fake.token_requests[-1]["code_verifier"]
    digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
    assert digest.decode() == params["code_challenge"]
    assert (await audit(panel, "user.login.succeeded"))[-1] == {"method": f"oauth:{provider}"}


async def test_state_is_bound_to_the_browser_that_started(panel: Panel, fake: FakeProvider) -> None:
    alice = await panel.signed_in(EMAIL)
    await link(alice, fake, "github")
    victim = await panel.browser()
    started = await victim.json("POST", START, json={"provider": "github"})
    query = fake.authorize(started["authorize_url"])
    attacker = await panel.browser()
    assert (await callback(attacker, query)).status == 401
    wrong_state = {**query, "state": query["state"][:-2] + "xx"}
    assert (await callback(victim, wrong_state)).status == 401
    # The right browser still completes, once.
    assert (await callback(victim, query)).status == 200
    assert (await callback(victim, query)).status == 401
    assert {"method": "oauth", "reason": "state"} in await audit(panel, "user.login.failed")


async def test_a_code_issued_for_another_pkce_challenge_is_refused(
    panel: Panel, fake: FakeProvider
) -> None:
    alice = await panel.signed_in(EMAIL)
    await link(alice, fake, "github")
    victim = await panel.browser()
    victim_start = await victim.json("POST", START, json={"provider": "github"})
    victim_state = fake.authorize(victim_start["authorize_url"])["state"]
    # A code obtained through another flow (another PKCE challenge), planted into this one.
    attacker = await panel.browser()
    attacker_start = await attacker.json("POST", START, json={"provider": "github"})
    stolen_code = fake.authorize(attacker_start["authorize_url"])["code"]
    response = await callback(victim, {"code": stolen_code, "state": victim_state})
    assert response.status == 401
    assert fake.token_requests[-1]["code_verifier"]  # sent, and wrong for that code
    failed = await audit(panel, "user.login.failed")
    assert failed[-1]["method"] == "oauth:github"


async def test_a_refusal_at_the_provider_signs_nobody_in(panel: Panel, fake: FakeProvider) -> None:
    browser = await panel.browser()
    started = await browser.json("POST", START, json={"provider": "discord"})
    query = fake.authorize(started["authorize_url"])
    response = await callback(browser, {"state": query["state"], "error": "access_denied"})
    assert response.status == 401
    assert fake.token_requests == []


@pytest.mark.parametrize(
    "bend",
    ["bad signature", "wrong aud", "wrong iss", "expired", "wrong nonce", "no nonce"],
)
async def test_google_id_tokens_are_verified_in_full(
    panel: Panel, fake: FakeProvider, bend: str
) -> None:
    alice = await panel.signed_in(EMAIL)
    await link(alice, fake, "google")
    now = int(time.time())
    if bend == "bad signature":
        fake.sign_with_other_key = True
    overrides: dict[str, dict[str, Any]] = {
        "wrong aud": {"aud": "someone-elses-client-id"},
        "wrong iss": {"iss": "https://evil.example.org"},
        "expired": {"iat": now - 7200, "exp": now - 3600},
        "wrong nonce": {"nonce": "a nonce from another sign-in"},
        "no nonce": {"nonce": None},
    }
    fake.claim_overrides = overrides.get(bend, {})
    browser = await panel.browser()
    response = await flow(browser, fake, "google")
    assert response.status == 401, await response.text()
    assert "Set-Cookie" not in response.headers or "stellar_session" not in str(
        response.headers.getall("Set-Cookie")
    )
    failure = (await audit(panel, "user.login.failed"))[-1]
    assert failure["method"] == "oauth:google"
    assert EXPECTED_REASON[bend] in failure["reason"]


async def test_a_provider_email_equal_to_a_users_does_not_sign_into_that_user(
    panel: Panel, fake: FakeProvider
) -> None:
    await panel.create_user(EMAIL)
    fake.user = ProviderUser("424242", EMAIL)  # same e-mail, never linked
    for provider in PROVIDERS:
        browser = await panel.browser()
        response = await flow(browser, fake, provider)
        assert response.status == 401
        assert (await browser.request("GET", "/api/v1/auth/session")).status == 401


async def test_a_provider_account_links_to_one_user_only(panel: Panel, fake: FakeProvider) -> None:
    alice = await panel.signed_in(EMAIL)
    await link(alice, fake, "github")
    bob = await panel.signed_in("bob@example.org")
    response = await flow(bob, fake, "github", start=LINK)
    assert response.status == 409
    assert await audit(panel, "user.oauth.link_failed")


async def test_the_last_way_to_sign_in_cannot_be_unlinked(panel: Panel, fake: FakeProvider) -> None:
    alice = await panel.signed_in(EMAIL)
    await link(alice, fake, "discord")
    async with transaction(session_factory(panel.server.app[ENGINE])) as db:
        await db.execute(update(User).where(User.email == EMAIL).values(password_hash=None))
    unlink = "/api/v1/account/oauth/unlink"
    await alice.json("POST", unlink, status=409, json={"provider": "discord"})
    fake.user = ProviderUser("2002", EMAIL)
    await link(alice, fake, "github")
    await alice.json("POST", unlink, status=204, json={"provider": "discord"})
    identities = await alice.json("GET", "/api/v1/account/oauth")
    assert [i["provider"] for i in identities["data"]] == ["github"]
    await alice.json("POST", unlink, status=409, json={"provider": "github"})


async def test_an_admin_sees_and_takes_back_what_an_intruder_added_to_an_account(
    panel: Panel, fake: FakeProvider
) -> None:
    """An intruder in alice's session links their own GitHub account (a way back in) and
    makes an API key. An administrator sees both, and where alice is signed in, on her
    account's routes; unlinking ends every session of hers and refuses the intruder's GitHub
    sign-in; revoking the key refuses it on its next request; her password still works."""
    alice = await panel.signed_in(EMAIL)
    alice_id = (await alice.json("GET", "/api/v1/auth/session"))["user"]["id"]
    fake.user = ProviderUser("6666", "intruder@example.net")
    await link(alice, fake, "github")
    # A second link started and left half done, to finish after the administrator acts.
    fake.user = ProviderUser("6667", "intruder@example.net")
    started = await alice.json("POST", LINK, json={"provider": "discord"})
    pending = fake.authorize(started["authorize_url"])
    fake.user = ProviderUser("6666", "intruder@example.net")
    made = await alice.json(
        "POST", "/api/v1/account/api-keys", 201, json={"name": "backdoor", "scopes": ["read"]}
    )
    intruder = await panel.browser()
    signed_in = await flow(intruder, fake, "github")
    assert signed_in.status == 200
    intruder.csrf = (await signed_in.json())["csrf_token"]
    bot = await panel.browser()
    bot.api_key = made["key"]
    await bot.json("GET", "/api/v1/servers")

    admin = await panel.signed_in("root@example.org", admin=True)
    admin_id = (await admin.json("GET", "/api/v1/auth/session"))["user"]["id"]
    base = f"/api/v1/users/{alice_id}"
    for path in ("/sessions", "/api-keys", "/oauth"):  # administrators only
        await alice.json("GET", base + path, status=403)
    sessions = (await admin.json("GET", base + "/sessions"))["data"]
    assert len(sessions) == 2
    assert not any(s["current"] for s in sessions)
    keys = (await admin.json("GET", base + "/api-keys"))["data"]
    assert [(k["name"], k["prefix"]) for k in keys] == [("backdoor", made["prefix"])]
    assert "key" not in keys[0]
    assert "secret_hash" not in keys[0]
    linked = (await admin.json("GET", base + "/oauth"))["data"]
    assert [(i["provider"], i["email"]) for i in linked] == [("github", "intruder@example.net")]

    # Not another user's ids through alice's routes, nor the administrator's own account.
    own_link = (await admin.json("GET", f"/api/v1/users/{admin_id}/oauth"))["data"]
    assert own_link == []
    bobs = await panel.signed_in("bob@example.org")
    bobs_key = await bobs.json(
        "POST", "/api/v1/account/api-keys", 201, json={"name": "bob's", "scopes": ["read"]}
    )
    await admin.json("DELETE", f"{base}/api-keys/{bobs_key['id']}", status=404)
    await admin.json("DELETE", f"{base}/oauth/{keys[0]['id']}", status=404)
    own = await admin.json("DELETE", f"/api/v1/users/{admin_id}/oauth/{linked[0]['id']}", 409)
    assert "account page" in own["error"]["message"]
    await admin.json("DELETE", f"/api/v1/users/{admin_id}/sessions", status=409)

    await admin.json("DELETE", f"{base}/oauth/{linked[0]['id']}", status=204)
    for browser in (intruder, alice):
        assert (await browser.request("GET", "/api/v1/auth/session")).status == 401
    again = await flow(await panel.browser(), fake, "github")
    assert again.status in (401, 403), await again.text()
    assert (await admin.json("GET", base + "/sessions"))["data"] == []
    # The half-done link cannot be finished — not even once she is signed in again in the
    # same browser: what her sessions had started ended with them.
    await alice.login(EMAIL)
    finished = await callback(alice, pending)
    assert finished.status in (400, 401), await finished.text()
    fake.user = ProviderUser("6667", "intruder@example.net")
    assert (await flow(await panel.browser(), fake, "discord")).status == 401
    await bot.json("GET", "/api/v1/servers")  # the key stays until revoked
    await admin.json("DELETE", f"{base}/api-keys/{keys[0]['id']}", status=204)
    assert (await bot.request("GET", "/api/v1/servers")).status == 401
    await admin.json("DELETE", f"{base}/api-keys/{keys[0]['id']}", status=404)
    bot.api_key = bobs_key["key"]
    await bot.json("GET", "/api/v1/servers")  # bob's key untouched
    await (await panel.browser()).login(EMAIL)  # her password signs in

    assert (await audit(panel, "user.oauth.unlinked"))[-1] == {
        "provider": "github", "email": EMAIL, "sessions_ended": 2,
    }  # fmt: skip
    assert (await audit(panel, "user.api_key.revoked"))[-1] == {
        "email": EMAIL, "name": "backdoor", "prefix": made["prefix"],
    }  # fmt: skip


async def test_a_link_finishes_only_in_a_live_session_of_its_account(
    panel: Panel, fake: FakeProvider
) -> None:
    """Signed out between starting a link and coming back from the provider (or another
    account signed in meanwhile in that browser): the link is refused, nothing is linked."""
    alice = await panel.signed_in(EMAIL)
    started = await alice.json("POST", LINK, json={"provider": "github"})
    query = fake.authorize(started["authorize_url"])
    await alice.json("POST", "/api/v1/auth/logout", status=204)
    refused = await callback(alice, query)
    assert refused.status == 401
    assert "sign in again and link again" in (await refused.json())["error"]["message"]
    assert (await audit(panel, "user.oauth.link_failed"))[-1]["reason"] == "session ended"
    again = await panel.browser()
    await again.login(EMAIL)
    assert (await again.json("GET", "/api/v1/account/oauth"))["data"] == []
    # Started and finished in one session, it links as before.
    await link(again, fake, "github")


async def test_an_admin_does_not_unlink_a_users_last_way_to_sign_in(
    panel: Panel, fake: FakeProvider
) -> None:
    alice = await panel.signed_in(EMAIL)
    alice_id = (await alice.json("GET", "/api/v1/auth/session"))["user"]["id"]
    await link(alice, fake, "discord")
    async with transaction(session_factory(panel.server.app[ENGINE])) as db:
        await db.execute(update(User).where(User.email == EMAIL).values(password_hash=None))
    admin = await panel.signed_in("root@example.org", admin=True)
    base = f"/api/v1/users/{alice_id}"
    identity = (await admin.json("GET", base + "/oauth"))["data"][0]
    refused = await admin.json("DELETE", f"{base}/oauth/{identity['id']}", status=409)
    assert refused["error"]["message"] == (
        f"the discord account is {EMAIL}'s only way to sign in: disable the account instead,"
        " or have them set a password or add a passkey first"
    )
    # Nothing changed: still linked, still signed in.
    assert len((await admin.json("GET", base + "/oauth"))["data"]) == 1
    await alice.json("GET", "/api/v1/auth/sessions")
    # Signing her out everywhere is a choice of its own (her keys stay).
    await admin.json("DELETE", base + "/sessions", status=204)
    assert (await alice.request("GET", "/api/v1/auth/session")).status == 401
    assert (await audit(panel, "user.sessions.ended"))[-1] == {"email": EMAIL, "ended": 1}


async def test_a_2fa_user_still_owes_the_code_after_oauth(
    panel: Panel, fake: FakeProvider, wall_clock: WallClock
) -> None:
    alice = await panel.signed_in(EMAIL)
    secret, _codes = await enrol(alice, wall_clock)
    await link(alice, fake, "google")
    browser = await panel.browser()
    response = await flow(browser, fake, "google")
    pending = await response.json()
    assert pending["mfa_required"] is True
    browser.csrf = pending["csrf_token"]
    await browser.json("GET", "/api/v1/auth/sessions", status=403)
    full = await browser.json(
        "POST", "/api/v1/auth/2fa", json={"code": oathtool(secret, wall_clock.now)}
    )
    assert full["user"]["email"] == EMAIL


async def test_oauth_can_be_configured_to_count_as_complete(
    engine: AsyncEngine,
    database_url: str,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
    wall_clock: WallClock,
    fake: FakeProvider,
) -> None:
    panel = await make_panel(
        database_url,
        aiohttp_server,
        aiohttp_client,
        wall_clock,
        fake,
        STELLAR_OAUTH_SKIPS_2FA="true",
    )
    alice = await panel.signed_in(EMAIL)
    await enrol(alice, wall_clock)
    await link(alice, fake, "github")
    body = await (await flow(await panel.browser(), fake, "github")).json()
    assert body["user"]["email"] == EMAIL


async def test_unconfigured_providers_are_not_offered(
    engine: AsyncEngine,
    database_url: str,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
    wall_clock: WallClock,
) -> None:
    panel = await mfa_panel(database_url, aiohttp_server, aiohttp_client, wall_clock)
    browser = await panel.browser()
    assert (await browser.json("GET", "/api/v1/auth/oauth/providers"))["providers"] == []
    await browser.json("POST", START, status=400, json={"provider": "google"})
