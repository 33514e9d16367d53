"""The profile page's mail flows in a real Chromium, with the real mail sender delivering to
a real SMTP server on loopback: verifying an address from the page, and changing it (the
change happens when the link mailed to the new address is opened)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, Page, expect
from pytest_aiohttp import AiohttpClient, AiohttpServer
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.control_plane.mail_support import (
    local,
    mail_environment,
    mail_panel,
    register,
)
from tests.integration.control_plane.web_account_support import sign_in
from tests.support.chromium import watched_page
from tests.support.panel import PASSWORD, Panel
from tests.support.smtp import MailCatcher, smtp_server

pytestmark = pytest.mark.browser


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
    environment = {"STELLAR_REQUIRE_EMAIL_VERIFICATION": "true"}
    async with (
        smtp_server(catcher) as port,
        mail_panel(
            mail_environment(database_url, port, **environment), aiohttp_server, aiohttp_client
        ) as p,
    ):
        yield p


async def confirm(page: Page, link: str) -> None:
    """Open a mailed verification link's page and confirm there (opening it uses nothing)."""
    await page.goto(local(link))
    await page.get_by_role("button", name="Confirm my address").click()
    await expect(page.get_by_role("status")).to_contain_text("is verified")


async def test_an_address_is_verified_then_changed_from_the_profile_page(
    panel: Panel, catcher: MailCatcher, browser: Browser
) -> None:
    await register(await panel.browser(), "new@example.org", PASSWORD)
    await catcher.next()  # the registration's verification mail
    watched = await watched_page(browser, f"http://localhost:{panel.server.port}")
    page = watched.page
    await sign_in(watched, "new@example.org")
    await page.goto("/account")
    await expect(page.get_by_text("not verified")).to_be_visible()
    # Until the address is verified, only the profile and what sets up a second factor are
    # open (the routes' own rule: a panel that requires both has the factor enrolled first).
    sections = page.get_by_role("navigation", name="Account sections").get_by_role("link")
    await expect(sections).to_have_text(["Profile", "Two-factor", "Passkeys"])
    assert await page.locator("#change-password").count() == 0

    await page.get_by_role("button", name="Mail me a new verification link").click()
    await expect(page.locator("#resend-verification").get_by_role("status")).to_have_text(
        "a verification link is on its way to new@example.org"
    )
    mail = await catcher.next()
    assert mail.to == "new@example.org"
    await confirm(page, mail.link())
    await page.goto("/account")
    await expect(page.get_by_text("verified", exact=True)).to_be_visible()
    await expect(sections).to_have_count(7)
    await watched.assert_clean()

    form = page.locator("#change-email")
    await form.get_by_label("New e-mail address").fill("Renamed@Example.org")
    await form.get_by_label("Current password").fill("not my password at all")
    await form.get_by_role("button", name="Change e-mail address").click()
    await expect(form.get_by_role("alert").first).to_contain_text("current password")
    await form.get_by_label("Current password").fill(PASSWORD)
    await form.get_by_role("button", name="Change e-mail address").click()
    await expect(form.get_by_role("status")).to_have_text(
        "open the link mailed to the new address to finish the change"
    )
    mails = {m.to: m for m in [await catcher.next(), await catcher.next()]}
    assert "renamed@example.org" in mails["new@example.org"].text  # the old address is told
    await page.reload()
    await expect(page.locator("[data-current-email]")).to_have_text("new@example.org")
    # The page says what is waiting, and where.
    await expect(page.locator("[data-pending-email]")).to_contain_text(
        "A change to renamed@example.org is waiting"
    )
    await confirm(page, mails["renamed@example.org"].link())
    await page.goto("/account")
    await expect(page.locator("[data-current-email]")).to_have_text("renamed@example.org")
    await expect(page.locator("[data-pending-email]")).to_have_count(0)
    await expect(page.get_by_role("link", name="renamed@example.org")).to_be_visible()
    await watched.assert_clean()


async def test_a_password_change_says_it_cancelled_the_change_of_address_waiting(
    panel: Panel, catcher: MailCatcher, browser: Browser
) -> None:
    """Changing the password ends every other session and retires the link of a change of
    address (whoever knew the old password may have asked for it): the page says so, and the
    link no longer moves the account."""
    await register(await panel.browser(), "mine@example.org", PASSWORD)
    watched = await watched_page(browser, f"http://localhost:{panel.server.port}")
    page = watched.page
    await sign_in(watched, "mine@example.org")
    await confirm(page, (await catcher.next()).link())
    await page.goto("/account")
    form = page.locator("#change-email")
    await form.get_by_label("New e-mail address").fill("elsewhere@example.org")
    await form.get_by_label("Current password").fill(PASSWORD)
    await form.get_by_role("button", name="Change e-mail address").click()
    await expect(form.get_by_role("status")).to_contain_text("open the link")
    mails = {m.to: m for m in [await catcher.next(), await catcher.next()]}
    await page.reload()
    await expect(page.locator("[data-pending-email]")).to_contain_text("elsewhere@example.org")

    password = page.locator("#change-password")
    await password.get_by_label("Current password").fill(PASSWORD)
    await password.get_by_label("New password", exact=True).fill("another long passphrase 7")
    await password.get_by_label("New password again").fill("another long passphrase 7")
    await password.get_by_role("button", name="Change password").click()
    await expect(password.get_by_role("status")).to_have_text(
        "Password changed. Your other sessions are signed out. The change of e-mail address"
        " that was waiting for its link is cancelled."
    )
    await expect(page.locator("[data-pending-email]")).to_have_count(0)
    await page.reload()
    await expect(page.locator("[data-pending-email]")).to_have_count(0)
    await page.goto(local(mails["elsewhere@example.org"].link()))
    await expect(page.get_by_text("this link is invalid, used or expired")).to_be_visible()
    await expect(page.get_by_role("button", name="Confirm my address")).to_have_count(0)
    await page.goto("/account")
    await expect(page.locator("[data-current-email]")).to_have_text("mine@example.org")
    await watched.assert_clean()
