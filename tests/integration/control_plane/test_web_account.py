"""The account's security pages in a real Chromium against the real control plane: TOTP
enrolment (codes from oathtool), a passkey registered and used through Chromium's virtual
WebAuthn authenticator, and sessions revoked from another browser.

Every page is watched for CSP violations, console errors and dialogs (``assert_clean``).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Browser, Page, expect
from pytest_aiohttp import AiohttpClient, AiohttpServer
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.control_plane.mfa_support import oathtool
from tests.integration.control_plane.web_account_support import (
    XSS,
    base_url,
    localhost_panel,
    sign_in,
    sign_out,
)
from tests.support.chromium import Watched, watched_page
from tests.support.clocks import WallClock
from tests.support.panel import PASSWORD, Panel

pytestmark = pytest.mark.browser
EMAIL = "alice@example.org"


@pytest.fixture
async def panel(
    engine: AsyncEngine,
    database_url: str,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
    wall_clock: WallClock,
) -> Panel:
    return await localhost_panel(database_url, aiohttp_server, aiohttp_client, wall_clock)


async def codes_shown(page: Page) -> list[str]:
    items = page.locator("[data-codes-list] li")
    await expect(items).to_have_count(10)
    return [text.strip() for text in await items.all_inner_texts()]


async def test_totp_is_enrolled_from_the_page_and_its_recovery_codes_are_shown_once(
    panel: Panel, browser: Browser, wall_clock: WallClock
) -> None:
    await panel.create_user(EMAIL)
    watched = await watched_page(browser, base_url(panel))
    page = watched.page
    await sign_in(watched, EMAIL)
    await page.get_by_role("link", name=EMAIL).click()
    await page.get_by_role("link", name="Two-factor").click()
    await expect(page.get_by_text("off", exact=True)).to_be_visible()
    await page.get_by_role("button", name="Set up an authenticator app").click()

    await expect(page.locator("[data-secret]")).to_have_text(re.compile(r"^[A-Z2-7]{16,}$"))
    secret = (await page.locator("[data-secret]").inner_text()).strip()
    assert len(secret) >= 16
    # The QR code is an image the browser drew (the API's SVG; the CSP allows it).
    qr = page.get_by_role("img", name="QR code of the secret for your authenticator app")
    await expect(qr).to_be_visible()
    assert await qr.evaluate("img => img.complete && img.naturalWidth > 0")

    await page.get_by_label("Code from the app").fill("000000")
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Turn on").click()
    await expect(page.get_by_role("alert")).to_have_text("wrong password or code")
    await page.get_by_label("Code from the app").fill(oathtool(secret, wall_clock.now))
    await page.get_by_role("button", name="Turn on").click()
    codes = await codes_shown(page)
    assert len(set(codes)) == 10
    await expect(page.get_by_role("heading", name="Your recovery codes")).to_be_focused()
    await watched.assert_clean()
    wall_clock.advance(30)  # that code's time step is spent

    # Shown once: the page again has the state, never the codes.
    await page.reload()
    await expect(page.get_by_text("Recovery codes left: 10")).to_be_visible()
    assert await page.locator("[data-codes-list] li").count() == 0
    html = await page.content()
    assert not any(code in html for code in codes)

    # Signing in now asks for a code from the app.
    await sign_out(watched)
    await page.get_by_label("E-mail").fill(EMAIL)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("button", name="Use a passkey")).to_be_hidden()
    await page.get_by_label("Code").fill(oathtool(secret, wall_clock.now))
    await page.get_by_role("button", name="Continue").click()
    await expect(page.get_by_role("link", name=EMAIL)).to_be_visible()
    wall_clock.advance(30)

    # New recovery codes (shown once again); the old ones stop working.
    await page.goto("/account/two-factor")
    form = page.locator("#regenerate-codes")
    await form.get_by_label("Password").fill(PASSWORD)
    await form.get_by_label("Code from the app").fill(oathtool(secret, wall_clock.now))
    await form.get_by_role("button", name="Make new recovery codes").click()
    fresh = await codes_shown(page)
    assert not set(fresh) & set(codes)
    wall_clock.advance(30)
    await page.get_by_role("link", name="I have stored them").click()
    await expect(page.get_by_text("Recovery codes left: 10")).to_be_visible()

    # Turned off with a recovery code of the new set (an old one is refused).
    off = page.locator("#disable-two-factor")
    await off.get_by_label("Password").fill(PASSWORD)
    await off.get_by_label("Code from the app").fill(codes[0])
    await off.get_by_role("button", name="Turn off two-factor authentication").click()
    await expect(off.get_by_role("alert")).to_have_text("wrong password or code")
    await off.get_by_label("Code from the app").fill(fresh[0])
    await off.get_by_role("button", name="Turn off two-factor authentication").click()
    await expect(page.get_by_role("button", name="Set up an authenticator app")).to_be_visible()
    await watched.assert_clean()


async def virtual_authenticator(watched: Watched) -> dict[str, Any]:
    """Chromium's virtual platform authenticator (a CTAP2 device with user verification),
    attached to the page: the browser's own WebAuthn path, no software stand-in."""
    cdp = await watched.context.new_cdp_session(watched.page)
    await cdp.send("WebAuthn.enable")
    added = await cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
            }
        },
    )
    credentials = await cdp.send(
        "WebAuthn.getCredentials", {"authenticatorId": added["authenticatorId"]}
    )
    assert credentials["credentials"] == []
    return {"cdp": cdp, "id": added["authenticatorId"]}


async def test_a_passkey_is_added_renamed_used_to_sign_in_and_removed(
    panel: Panel, browser: Browser
) -> None:
    await panel.create_user(EMAIL)
    watched = await watched_page(browser, base_url(panel))
    page = watched.page
    device = await virtual_authenticator(watched)
    await sign_in(watched, EMAIL)
    await page.goto("/account/passkeys")
    await expect(page.get_by_text("You have no passkeys yet.")).to_be_visible()

    await page.get_by_label("Name").fill(XSS)
    await page.get_by_role("button", name="Add a passkey").click()
    rows = page.locator("#passkey-table tbody tr")
    await expect(rows).to_have_count(1)
    await expect(rows.first.locator("[data-passkey-name]")).to_have_text(XSS)
    stored = await device["cdp"].send("WebAuthn.getCredentials", {"authenticatorId": device["id"]})
    [credential] = stored["credentials"]
    assert credential["isResidentCredential"] is True
    assert credential["rpId"] == "localhost"
    await watched.assert_clean()

    await rows.first.get_by_role("button", name="Rename").click()
    await rows.first.get_by_label(f"New name for {XSS}").fill("work laptop")
    await rows.first.get_by_role("button", name="Save").click()
    await expect(rows.first.locator("[data-passkey-name]")).to_have_text("work laptop")
    await expect(rows.first.locator("td").nth(2)).to_have_text("never")

    # Signed out, the sign-in page's passkey button signs in with no e-mail typed.
    await sign_out(watched)
    await page.goto("/login?next=/account/passkeys")
    await page.get_by_role("button", name="Use a passkey").click()
    await page.wait_for_url(f"{base_url(panel)}/account/passkeys")
    await expect(page.get_by_role("link", name=EMAIL)).to_be_visible()
    await expect(rows.first.locator("td").nth(2)).not_to_have_text("never")
    await watched.assert_clean()

    # Removed (on the second press: the first asks), it signs in no more.
    remove = rows.first.get_by_role("button", name="Remove")
    await remove.click()
    await expect(rows.first.get_by_role("button", name="Really remove?")).to_be_visible()
    await rows.first.get_by_role("button", name="Really remove?").click()
    await expect(page.get_by_text("You have no passkeys yet.")).to_be_visible()
    await sign_out(watched)
    await page.get_by_role("button", name="Use a passkey").click()
    await expect(page.locator("[data-passkey-error]")).to_have_text("the passkey was not accepted")
    assert urlsplit(page.url).path == "/login"
    await watched.assert_clean()


async def test_a_revoked_session_is_signed_out_on_its_next_request(
    panel: Panel, browser: Browser
) -> None:
    await panel.create_user(EMAIL)
    here, laptop, phone = [await watched_page(browser, base_url(panel)) for _ in range(3)]
    for watched in (here, laptop, phone):
        await sign_in(watched, EMAIL)
    page = here.page
    await page.goto("/account/sessions")
    rows = page.locator("#session-table tbody tr")
    await expect(rows).to_have_count(3)
    mine = page.locator("#session-table tr[data-current]")
    await expect(mine).to_have_count(1)
    await expect(mine.get_by_text("this session")).to_be_visible()
    # This session has no button to revoke itself (signing out does that).
    assert await mine.get_by_role("button").count() == 0

    # The laptop's session: its row is the newest but one... find it by its id.
    laptop_id = await session_id(laptop)
    row = page.locator(f'tr[data-session-id="{laptop_id}"]')
    await row.get_by_role("button", name="Sign out").click()
    await row.get_by_role("button", name="Really sign out?").click()
    await expect(rows).to_have_count(2)
    await laptop.page.goto("/account")
    assert urlsplit(laptop.page.url).path == "/login"
    await phone.page.goto("/account")
    assert urlsplit(phone.page.url).path == "/account"

    await page.get_by_role("button", name="Sign out all other sessions").click()
    await page.get_by_role("button", name="Really sign out all others?").click()
    await expect(rows).to_have_count(1)
    await expect(page.get_by_text("This is your only session.")).to_be_visible()
    await phone.page.reload()
    assert urlsplit(phone.page.url).path == "/login"
    # This one still works.
    await page.goto("/account")
    await expect(page.get_by_role("heading", name="Account")).to_be_visible()
    for watched in (here, laptop, phone):
        await watched.assert_clean()


async def session_id(watched: Watched) -> str:
    """The id of the session this browser holds, as the API lists it."""
    response = await watched.page.request.get("/api/v1/auth/sessions")
    found = [s["id"] for s in (await response.json())["data"] if s["current"]]
    assert len(found) == 1
    return str(found[0])
