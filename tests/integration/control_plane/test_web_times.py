"""Times on the pages are shown in the browser's locale and time zone (app.js localTimes):
those in the page when it loads and those added later (htmx fragments, rows a script draws)."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import Browser, expect

from tests.support.panel import Panel

pytestmark = pytest.mark.browser


async def test_times_are_shown_in_the_visitor_s_zone_and_locale(
    panel: Panel, browser: Browser
) -> None:
    context = await browser.new_context(
        base_url=f"http://localhost:{panel.server.port}", locale="en-GB", timezone_id="Asia/Tokyo"
    )
    try:
        page = await context.new_page()
        await page.goto("/login")
        await expect(page.locator("html")).to_have_attribute("data-ready", "true")
        # A fragment arrives after load, as the server prints times: ISO 8601 in UTC.
        await page.evaluate(
            """() => {
                const part = document.createElement("p");
                const at = document.createElement("time");
                at.setAttribute("datetime", "2026-01-02T18:04:05Z");
                at.textContent = "2026-01-02 18:04 UTC";
                const day = document.createElement("time");
                day.setAttribute("datetime", "2026-03-31T23:30:00Z");
                day.dataset.format = "date";
                part.append(at, " ", day);
                document.querySelector("main").append(part);
            }"""
        )
        # 18:04 UTC is 03:04 the next day in Tokyo; 23:30 UTC on 31 March is 1 April there.
        shown = page.locator("time").first
        await expect(shown).to_have_text("3 Jan 2026, 03:04")
        # The title: the full date, the seconds and the zone (its wording is the browser's).
        await expect(shown).to_have_attribute(
            "title", re.compile(r"^Saturday,? 3 January 2026 at 03:04:05 (JST|GMT\+9)$")
        )
        await expect(page.locator("time").nth(1)).to_have_text("1 Apr 2026")
    finally:
        await context.close()
