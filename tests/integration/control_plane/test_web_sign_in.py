"""Signing up and in on the panel's pages in a real Chromium, against the real control plane:
password, the second factor (TOTP codes from oathtool, recovery codes that work once), an
OAuth provider (a local fake one, reached through the browser), what a refusal says, and what
a panel with registration closed shows. Every page: no CSP violation, console error or dialog.
"""

from __future__ import annotations

import re
import urllib.parse
import uuid

import pytest
from playwright.async_api import Browser, Page, expect
from pytest_aiohttp import AiohttpClient, AiohttpServer
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from control_plane.db.engine import session_factory
from control_plane.db.models import User
from control_plane.db.session import transaction
from control_plane.keys import ENGINE
from tests.integration.control_plane.conftest import UNLIMITED
from tests.integration.control_plane.fake_oauth import FakeProvider, ProviderUser
from tests.integration.control_plane.mfa_support import enrol, oathtool
from tests.integration.control_plane.web_support import (
    base_url,
    csrf_of,
    environment,
    sign_in,
    web_panel,
)
from tests.support.chromium import Watched, watched_page
from tests.support.clocks import WallClock
from tests.support.panel import PASSWORD, Panel

pytestmark = pytest.mark.browser
EMAIL = "newcomer@example.org"
XSS = '"><img src=x onerror=alert(1)>'


@pytest.fixture
async def fake(aiohttp_server: AiohttpServer) -> FakeProvider:
    provider = FakeProvider()
    server = await aiohttp_server(provider.app())
    provider.base_url = str(server.make_url("")).rstrip("/")
    return provider


async def sign_out(page: Page) -> None:
    await page.get_by_role("button", name="Sign out").click()
    await page.wait_for_url("**/login")


async def second_step(page: Page, code: str, *, recovery: bool = False) -> None:
    if recovery:
        await page.get_by_role("button", name="Use a recovery code instead").click()
        field = page.get_by_label("Recovery code")
    else:
        field = page.get_by_label("Authentication code")
    await field.fill(code)
    await page.get_by_role("button", name="Continue").click()


async def test_sign_up_then_in_with_a_code_and_with_a_recovery_code_that_works_once(
    engine: AsyncEngine,
    database_url: str,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
    wall_clock: WallClock,
    browser: Browser,
) -> None:
    panel = await web_panel(
        aiohttp_server, aiohttp_client, environment(database_url), wall_clock=wall_clock
    )
    home = base_url(panel) + "/"
    watched = await watched_page(browser, base_url(panel))
    page = watched.page
    await page.goto("/login")
    await page.get_by_role("link", name="Create one").click()
    await page.wait_for_url("**/register?next=/")
    await page.get_by_label("E-mail").fill(EMAIL)
    password, again = page.get_by_label("Password", exact=True), page.get_by_label("Password again")
    await password.fill(PASSWORD)
    await again.fill(PASSWORD + "!")
    await page.get_by_role("button", name="Create account").click()
    await expect(page.locator('[data-error-for="password_again"]')).to_have_text(
        "The two passwords differ."
    )
    # The API's refusal is shown next to the field it is about.
    await password.fill("short")
    await again.fill("short")
    await page.get_by_role("button", name="Create account").click()
    await expect(page.locator('[data-error-for="password"]')).to_contain_text("12")
    await password.fill(PASSWORD)
    await again.fill(PASSWORD)
    await page.get_by_role("button", name="Create account").click()
    await page.wait_for_url(home)
    await expect(page.get_by_text("You have no servers yet.")).to_be_visible()
    await watched.assert_clean()

    # TOTP through the JSON API, with this browser's own session.
    api, headers = watched.context.request, {"X-CSRF-Token": await csrf_of(page)}
    setup = await (await api.post("/api/v1/account/2fa/setup", headers=headers)).json()
    secret = setup["secret"]
    enabled = await api.post(
        "/api/v1/account/2fa/enable",
        headers=headers,
        data={"code": oathtool(secret, wall_clock.now), "password": PASSWORD},
    )
    assert enabled.ok, await enabled.text()
    recovery_codes = (await enabled.json())["recovery_codes"]
    wall_clock.advance(30)  # that time step's code is spent

    await sign_out(page)
    await sign_in(page, EMAIL)
    await expect(page.locator("#second-factor")).to_be_visible()
    # Away from the sign-in page half-way: any page sends back to its second step.
    await page.goto("/account/api-keys")
    await page.wait_for_url("**/login?next=/account/api-keys")
    await expect(page.locator("#second-factor")).to_be_visible()
    await second_step(page, "000000")
    await expect(page.get_by_role("alert")).to_have_text("invalid or already used code")
    await second_step(page, oathtool(secret, wall_clock.now))
    await page.wait_for_url(base_url(panel) + "/account/api-keys")
    await watched.assert_clean()
    wall_clock.advance(30)

    # A recovery code signs in once.
    await sign_out(page)
    await sign_in(page, EMAIL)
    await second_step(page, recovery_codes[0], recovery=True)
    await page.wait_for_url(home)
    await sign_out(page)
    await sign_in(page, EMAIL)
    await second_step(page, recovery_codes[0], recovery=True)
    await expect(page.get_by_role("alert")).to_have_text("invalid or already used code")
    # Back to the app's code, which still works.
    await page.get_by_role("button", name="Use the authenticator app instead").click()
    await second_step(page, oathtool(secret, wall_clock.now))
    await page.wait_for_url(home)
    await expect(page.locator(".who")).to_have_text(EMAIL)
    await watched.assert_clean()


async def link_github(alice_panel: Panel, email: str, fake: FakeProvider) -> None:
    """Link ``email``'s account to the provider's current user, through the JSON API."""
    alice = await alice_panel.signed_in(email)
    started = await alice.json("POST", "/api/v1/account/oauth/link", json={"provider": "github"})
    query = fake.authorize(started["authorize_url"])
    callback = "/api/v1/auth/oauth/callback?" + urllib.parse.urlencode(query)
    await alice.json("GET", callback)


async def provider_sign_in(watched: Watched, start: str) -> None:
    page = watched.page
    await page.goto(start)
    await page.get_by_role("button", name="Sign in with GitHub").click()


async def test_oauth_sign_in_goes_through_the_provider_in_the_browser(
    engine: AsyncEngine,
    database_url: str,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
    wall_clock: WallClock,
    browser: Browser,
    fake: FakeProvider,
) -> None:
    # Only GitHub is configured: only its button is offered.
    github = {k: v for k, v in fake.env().items() if "GOOGLE" not in k and "DISCORD" not in k}
    panel = await web_panel(
        aiohttp_server,
        aiohttp_client,
        environment(database_url, **github),
        wall_clock=wall_clock,
    )
    await link_github(panel, "alice@example.org", fake)
    watched = await watched_page(browser, base_url(panel))
    page = watched.page
    await provider_sign_in(watched, "/login?next=/%3Fpage%3D1")
    await page.wait_for_url(lambda url: url.endswith("/?page=1"))
    assert urllib.parse.urlsplit(page.url).netloc == f"localhost:{panel.server.port}"
    await expect(page.locator(".who")).to_have_text("alice@example.org")
    await watched.assert_clean()

    await page.goto("/login")  # signed in: sent on
    await page.wait_for_url(base_url(panel) + "/")
    await sign_out_and_check_buttons(page)

    # With a second factor, the provider's sign-in still owes it; a "next" to elsewhere is
    # ignored on the way.
    alice = await panel.browser()
    await alice.login("alice@example.org")
    secret, _ = await enrol(alice, wall_clock)
    await provider_sign_in(watched, "/login?next=//evil.example/")
    await expect(page.get_by_label("Authentication code")).to_be_visible()
    await second_step(page, oathtool(secret, wall_clock.now))
    await page.wait_for_url(base_url(panel) + "/")
    await watched.assert_clean()

    # A provider account linked to nobody here: the return page says so.
    fake.user = ProviderUser("2002", "mallory@example.org")
    stranger = await watched_page(browser, base_url(panel))
    await provider_sign_in(stranger, "/login")
    await expect(stranger.page.get_by_role("alert")).to_have_text(
        "no account here is linked to this github account: sign in another way and link it first"
    )
    await expect(stranger.page.get_by_role("link", name="Back to sign in")).to_be_visible()
    await stranger.assert_clean()


async def sign_out_and_check_buttons(page: Page) -> None:
    await sign_out(page)
    buttons = page.get_by_role("button", name=re.compile("^Sign in with"))
    await expect(buttons).to_have_count(1)
    await expect(buttons).to_have_text("Sign in with GitHub")
    # The place the passkey button goes (built with the passkeys pages).
    await expect(page.locator("[data-passkey-signin]")).to_have_count(1)


async def test_refusals_say_why_disabled_and_rate_limited(
    engine: AsyncEngine,
    database_url: str,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
    browser: Browser,
) -> None:
    limits = UNLIMITED.replace("authentication=1000000/60", "authentication=3/60")
    panel = await web_panel(
        aiohttp_server, aiohttp_client, environment(database_url, STELLAR_RATE_LIMITS=limits)
    )
    user_id = await panel.create_user("off@example.org")
    async with transaction(session_factory(panel.server.app[ENGINE])) as db:
        await db.execute(update(User).where(User.id == uuid.UUID(user_id)).values(disabled=True))
    watched = await watched_page(browser, base_url(panel))
    page = watched.page
    await page.goto("/login")
    alert = page.get_by_role("alert")
    await sign_in(page, "off@example.org")
    await expect(alert).to_have_text("this account is disabled; ask an administrator")
    # Only the password's holder learns that: a wrong one gets the usual answer.
    await sign_in(page, "off@example.org", "not the password at all")
    await expect(alert).to_have_text("invalid e-mail or password")
    await sign_in(page, "off@example.org", "still not the password")
    await expect(alert).to_have_text("invalid e-mail or password")
    await sign_in(page, "off@example.org")
    await expect(alert).to_have_text(re.compile(r"^too many requests; try again in \d+ s$"))
    await watched.assert_clean()


async def test_an_account_under_guessing_still_opens_in_its_owners_browser(
    engine: AsyncEngine,
    database_url: str,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
    browser: Browser,
) -> None:
    """Guesses from many addresses (a trusted proxy names a new one for each) spend the
    account's allowance: a browser it never signed in with is refused even the right
    password and says why; the owner's own browser signs in."""
    limits = UNLIMITED.replace("sign_in_account=1000000/60", "sign_in_account=10/900")
    env = environment(
        database_url, STELLAR_RATE_LIMITS=limits, STELLAR_TRUSTED_PROXIES="127.0.0.1/32"
    )
    panel = await web_panel(aiohttp_server, aiohttp_client, env)
    await panel.create_user("owner@example.org")
    owner = await watched_page(browser, base_url(panel))
    await owner.page.goto("/login")
    await sign_in(owner.page, "owner@example.org")
    await owner.page.wait_for_url("**/")
    await sign_out(owner.page)

    attacker = await panel.browser()
    wrong = {"email": "owner@example.org", "password": "a guess from a botnet"}
    statuses = [
        (
            await attacker.request(
                "POST",
                "/api/v1/auth/login",
                json=wrong,
                headers={"X-Forwarded-For": f"203.0.113.{n}"},
            )
        ).status
        for n in range(1, 12)
    ]
    # The owner's first sign-in, from a browser new to the account then, spent one of ten.
    assert statuses == [401] * 9 + [429] * 2

    stranger = await watched_page(browser, base_url(panel))
    await stranger.page.goto("/login")
    await sign_in(stranger.page, "owner@example.org")
    await expect(stranger.page.get_by_role("alert")).to_have_text(
        re.compile(
            r"^too many attempts for this account; try again in \d+ s, "
            r"or sign in from a browser you have signed in with before$"
        )
    )
    await sign_in(owner.page, "owner@example.org")
    await owner.page.wait_for_url("**/")
    await expect(owner.page.get_by_role("button", name="Sign out")).to_be_visible()
    await owner.assert_clean()
    await stranger.assert_clean()


@pytest.mark.parametrize(
    ("mode", "says"),
    [
        ("closed", "Registration is closed on this panel. Ask an administrator for an account."),
        ("invite_only", "Accounts here are made by invitation only"),
    ],
)
async def test_a_closed_panel_offers_no_registration_form(
    engine: AsyncEngine,
    database_url: str,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
    browser: Browser,
    mode: str,
    says: str,
) -> None:
    env = environment(database_url, STELLAR_REGISTRATION=mode)
    panel = await web_panel(aiohttp_server, aiohttp_client, env)
    watched = await watched_page(browser, base_url(panel))
    page = watched.page
    await page.goto("/login")
    # Nothing to offer: no registration, no reset by mail (no SMTP), no provider.
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    for absent in ("Create one", "Forgot your password?"):
        await expect(page.get_by_role("link", name=absent)).to_have_count(0)
    await expect(page.get_by_role("button", name=re.compile("^Sign in with"))).to_have_count(0)
    await page.goto("/register")
    await expect(page.get_by_text(says)).to_be_visible()
    await expect(page.locator("form, input")).to_have_count(0)
    await page.goto("/forgot-password")
    await expect(page.get_by_text("This panel sends no e-mail")).to_be_visible()
    await expect(page.locator("form, input")).to_have_count(0)
    await watched.assert_clean()


async def test_user_strings_in_addresses_are_shown_as_text(
    engine: AsyncEngine,
    database_url: str,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
    browser: Browser,
) -> None:
    panel = await web_panel(aiohttp_server, aiohttp_client, environment(database_url))
    watched = await watched_page(browser, base_url(panel))
    page = watched.page
    payload = urllib.parse.quote("/" + XSS)
    for path in (
        f"/login?next={payload}",
        f"/register?next={payload}",
        f"/reset-password?token={urllib.parse.quote(XSS)}",
        f"/verify-email?token={urllib.parse.quote(XSS)}",
    ):
        await page.goto(path)
        assert await page.locator("img").count() == 0, path
        await watched.assert_clean()
    # The dead link's page says what to do, with nothing of the token in it.
    await expect(page.get_by_role("alert")).to_have_text(
        "This link is invalid, used or expired; ask for a new one."
    )
    assert XSS not in await page.content()
