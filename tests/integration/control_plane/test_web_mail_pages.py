"""The pages a mailed link opens, in a real Chromium, with the real mail: the control plane
sends through a real SMTP server on loopback and the test opens the link it reads from the
captured message. Password reset (the link works once, the old password stops working) and
e-mail verification (an unverified account is held until the link is used).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pyotp
import pytest
from playwright.async_api import Browser, Page, expect
from pytest_aiohttp import AiohttpClient, AiohttpServer
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.control_plane.mail_support import local, mail_environment, mail_panel
from tests.integration.control_plane.web_support import (
    base_url,
    csrf_of,
    register_on_page,
    sign_in,
)
from tests.support.chromium import watched_page
from tests.support.panel import PASSWORD, Panel
from tests.support.smtp import MailCatcher, smtp_server

pytestmark = pytest.mark.browser
NEW_PASSWORD = "a brand new passphrase 2026"
DEAD_LINK = "This link is invalid, used or expired; ask for a new one."


@pytest.fixture
def catcher() -> MailCatcher:
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


@pytest.fixture
async def strict_panel(
    engine: AsyncEngine,
    database_url: str,
    catcher: MailCatcher,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
) -> AsyncIterator[Panel]:
    """Verification required: an unverified account can do nothing until the link is used."""
    async with smtp_server(catcher) as port:
        environment = mail_environment(
            database_url, port, STELLAR_REQUIRE_EMAIL_VERIFICATION="true"
        )
        async with mail_panel(environment, aiohttp_server, aiohttp_client) as p:
            yield p


async def set_password(page: Page, password: str, again: str | None = None) -> None:
    await page.get_by_label("New password", exact=True).fill(password)
    await page.get_by_label("New password again").fill(password if again is None else again)
    await page.get_by_role("button", name="Set password").click()


async def test_password_reset_through_the_mail_works_once(
    panel: Panel, catcher: MailCatcher, browser: Browser
) -> None:
    await panel.create_user("reset@example.org")
    watched = await watched_page(browser, base_url(panel))
    page = watched.page
    await page.goto("/login")
    await page.get_by_role("link", name="Forgot your password?").click()
    await page.get_by_label("E-mail").fill("Reset@Example.org")
    await page.get_by_role("button", name="Mail me a link").click()
    await expect(page.get_by_role("status")).to_contain_text(
        "a link to reset its password is on its way"
    )
    await watched.assert_clean()
    link = local((await catcher.next()).link())
    assert link.startswith("/reset-password?token="), link

    # The link is opened twice (a second tab) before either sets a password.
    other = await watched_page(browser, base_url(panel))
    await other.page.goto(link)
    await page.goto(link)
    await expect(page.get_by_role("heading", name="Set a new password")).to_be_visible()
    await set_password(page, NEW_PASSWORD, NEW_PASSWORD + "?")
    await expect(page.locator('[data-error-for="password_again"]')).to_have_text(
        "The two passwords differ."
    )
    await set_password(page, "too short")
    await expect(page.locator('[data-error-for="new_password"]')).to_contain_text("12")
    await set_password(page, NEW_PASSWORD)
    await expect(page.get_by_role("status")).to_contain_text("Your password is changed")
    await watched.assert_clean()
    # The other tab's try comes too late: refused, with what to do.
    await set_password(other.page, NEW_PASSWORD + "!")
    await expect(other.page.get_by_role("alert")).to_have_text(
        "this link is invalid, used or expired; ask for a new one"
    )
    await other.assert_clean()

    await page.get_by_role("link", name="Sign in").click()
    await sign_in(page, "reset@example.org", PASSWORD)
    await expect(page.get_by_role("alert")).to_have_text("invalid e-mail or password")
    await sign_in(page, "reset@example.org", NEW_PASSWORD)
    await page.wait_for_url(base_url(panel) + "/")
    await expect(page.locator(".who")).to_have_text("reset@example.org")
    # Opening the used link again: the page says it is dead and offers no form.
    await page.goto(link)
    await expect(page.get_by_role("alert")).to_have_text(DEAD_LINK)
    await expect(page.locator("form")).to_have_count(0)
    await page.get_by_role("link", name="Ask for a new link").click()
    await expect(page.get_by_role("button", name="Mail me a link")).to_be_visible()
    await watched.assert_clean()


async def test_the_verification_link_in_the_mail_lets_a_new_account_in(
    strict_panel: Panel, catcher: MailCatcher, browser: Browser
) -> None:
    panel = strict_panel
    watched = await watched_page(browser, base_url(panel))
    page = watched.page
    await register_on_page(page, "Fresh@Example.org")
    await expect(page.get_by_role("status")).to_have_text(
        "Your account is made. Open the link we mailed to fresh@example.org to start using it."
    )
    await watched.assert_clean()
    mail = await catcher.next()
    assert mail.envelope_to == ["fresh@example.org"]
    link = local(mail.link())
    assert link.startswith("/verify-email?token="), link

    # Not verified yet: the panel holds the account on its profile page, which says why.
    await page.goto("/")
    await page.wait_for_url("**/account")
    await expect(page.locator("[data-must-verify]")).to_contain_text(
        "Your administrators require a verified e-mail address"
    )
    await expect(page.get_by_role("button", name="Mail me a new verification link")).to_be_visible()
    # Opening the link uses nothing up; the button does.
    await page.goto(link)
    await expect(
        page.get_by_text("Confirm that fresh@example.org is your address.")
    ).to_be_visible()
    await page.reload()
    await page.get_by_role("button", name="Confirm my address").click()
    await expect(page.get_by_role("status")).to_have_text(
        "Thank you: fresh@example.org is verified."
    )
    await page.get_by_role("link", name="Continue to your servers").click()
    await expect(page.get_by_text("You have no servers yet.")).to_be_visible()
    await watched.assert_clean()
    # Once only.
    await page.goto(link)
    await expect(page.get_by_role("alert")).to_have_text(DEAD_LINK)
    await expect(page.get_by_role("button", name="Confirm my address")).to_have_count(0)
    await watched.assert_clean()


async def test_an_account_that_must_enrol_and_verify_does_both_without_a_loop(
    engine: AsyncEngine,
    database_url: str,
    catcher: MailCatcher,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
    browser: Browser,
) -> None:
    """Both required (a second factor for everyone, verified addresses): a new account is
    sent to set up its second factor first — a page open to it although its address is not
    verified yet (it went back and forth between the two pages before) — then to its
    profile page, then in."""
    async with smtp_server(catcher) as port:
        environment = mail_environment(
            database_url,
            port,
            STELLAR_REQUIRE_EMAIL_VERIFICATION="true",
            STELLAR_REQUIRE_2FA="everyone",
            STELLAR_ENCRYPTION_KEYS="k1:" + "5e" * 8 + "a1b2c3d4e5f60718" * 3,
        )
        async with mail_panel(environment, aiohttp_server, aiohttp_client) as panel:
            watched = await watched_page(browser, base_url(panel))
            page = watched.page
            await register_on_page(page, "both@example.org")
            await expect(page.get_by_role("status")).to_contain_text("Your account is made.")
            link = local((await catcher.next()).link())

            answer = await page.goto("/")
            assert answer is not None
            assert answer.status == 200
            assert page.url == base_url(panel) + "/account/two-factor"
            await expect(page.locator("[data-must-enrol]")).to_be_visible()
            api, headers = page.context.request, {"X-CSRF-Token": await csrf_of(page)}
            setup = await (await api.post("/api/v1/account/2fa/setup", headers=headers)).json()
            enabled = await api.post(
                "/api/v1/account/2fa/enable",
                headers=headers,
                data={"code": pyotp.TOTP(setup["secret"]).now(), "password": PASSWORD},
            )
            assert enabled.ok, await enabled.text()

            await page.goto("/")
            await page.wait_for_url("**/account")
            await expect(page.locator("[data-must-verify]")).to_be_visible()
            await page.goto(link)
            await page.get_by_role("button", name="Confirm my address").click()
            await page.get_by_role("link", name="Continue to your servers").click()
            await expect(page.get_by_text("You have no servers yet.")).to_be_visible()
            await watched.assert_clean()
