"""A user the administrators require to enrol a second factor (``STELLAR_REQUIRE_2FA``), in
a real Chromium: every page sends them to the account's two-factor page, which says why,
instead of a 403 page; once enrolled, the panel opens. The decision is the server's (a 303
from the page itself), the JSON API still answers 403.
"""

from __future__ import annotations

import re

import pytest
from playwright.async_api import Browser, expect
from pytest_aiohttp import AiohttpClient, AiohttpServer
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.control_plane.mfa_support import mfa_panel, oathtool
from tests.integration.control_plane.web_account_support import base_url
from tests.integration.control_plane.web_support import sign_in
from tests.support.chromium import watched_page
from tests.support.clocks import WallClock
from tests.support.panel import PASSWORD, Panel

pytestmark = pytest.mark.browser
EMAIL = "owed@example.org"
WHY = "Your administrators require two-factor authentication on this panel"


@pytest.fixture
async def panel(
    engine: AsyncEngine,
    database_url: str,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
    wall_clock: WallClock,
) -> Panel:
    return await mfa_panel(
        database_url,
        aiohttp_server,
        aiohttp_client,
        wall_clock,
        env={"STELLAR_REQUIRE_2FA": "everyone"},
    )


async def test_a_user_who_must_enrol_is_sent_to_the_two_factor_page(
    panel: Panel, browser: Browser, wall_clock: WallClock
) -> None:
    await panel.create_user(EMAIL)
    watched = await watched_page(browser, base_url(panel))
    page = watched.page
    await page.goto("/login?next=/account/sessions")
    await sign_in(page, EMAIL)
    # Signed in, the page goes to ``next``; the server sends them on to enrol, saying why.
    await page.wait_for_url(base_url(panel) + "/account/two-factor")
    await expect(page.locator("[data-must-enrol]")).to_contain_text(WHY)
    await expect(page.get_by_role("heading", name="403")).to_have_count(0)
    await watched.assert_clean()
    # Any other page, opened directly: a redirect from the server, not a 403 page.
    response = await page.request.get("/", max_redirects=0)
    assert response.status == 303
    assert response.headers["location"] == "/account/two-factor"
    await page.goto("/")
    await page.wait_for_url(base_url(panel) + "/account/two-factor")
    # The JSON API keeps its answer (a client reads the reason).
    api = await page.request.get("/api/v1/servers")
    assert api.status == 403
    assert "set up two-factor authentication first" in (await api.json())["error"]["message"]

    await page.get_by_role("button", name="Set up an authenticator app").click()
    await expect(page.locator("[data-secret]")).to_have_text(re.compile(r"^[A-Z2-7]{16,}$"))
    secret = (await page.locator("[data-secret]").inner_text()).strip()
    await page.get_by_label("Code from the app").fill(oathtool(secret, wall_clock.now))
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Turn on").click()
    await expect(page.locator("[data-codes-list] li")).to_have_count(10)
    await watched.assert_clean()
    # Enrolled: the panel opens, and the two-factor page no longer says it is owed.
    await page.goto("/")
    await expect(page).to_have_url(base_url(panel) + "/")
    await expect(page.get_by_role("heading", name="403")).to_have_count(0)
    await page.goto("/account/two-factor")
    await expect(page.locator("[data-must-enrol]")).to_have_count(0)
    await watched.assert_clean()
