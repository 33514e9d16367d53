"""The console page says so when the node throttles a game's output (its lines-per-second
limit, set low here), in a real Chromium against a real agent and game container."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import Browser, expect

from tests.integration.control_plane.stack import Stack, wait_for_state
from tests.integration.control_plane.test_web_console import (
    PHONE,
    address,
    colourful_server,
    leave,
    open_console,
    terminal,
)
from tests.support.chromium import watched_page

pytestmark = [pytest.mark.browser, pytest.mark.docker]
# 200 lines at once, then the fake game: far over the limit below.
FLOOD = (
    '/bin/sh -c "i=0; while [ $i -lt 200 ]; do echo flood $i; i=$((i+1)); done;'
    ' exec /usr/local/bin/fake-game"'
)


@pytest.fixture
def stack_agent_settings() -> dict[str, Any]:
    return {"console": {"lines_per_second": 20}}


async def test_throttled_output_is_announced_on_the_page(stack: Stack, browser: Browser) -> None:
    server_id, _ = await colourful_server(stack, "loud@example.org", FLOOD)
    owner = await stack.panel.browser()
    await owner.login("loud@example.org")
    await wait_for_state(owner, server_id, "offline")
    watched = await watched_page(browser, address(stack))
    await watched.page.set_viewport_size(PHONE)
    page = await open_console(watched, server_id, "loud@example.org")
    # At 360 px, with the power buttons, the input and the graphs: nothing scrolls sideways.
    assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    notice = page.locator("[data-console-notice]")
    await expect(notice).to_be_hidden()
    await page.get_by_role("button", name="Start", exact=True).click()
    await expect(terminal(page)).to_contain_text("[stellar] output throttled", timeout=30_000)
    await expect(notice).to_contain_text("some lines were dropped")
    await expect(notice).to_be_visible()
    await watched.assert_clean()
    await leave(watched, stack)
