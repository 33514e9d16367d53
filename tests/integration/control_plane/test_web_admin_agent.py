"""The administration pages with a real agent: the control plane's health poll finds the node
up, and the overview and the node's page say so, with when it was last seen, its clock
offset and what its servers were given. A server named like an XSS payload is text there."""

from __future__ import annotations

import asyncio
import re
import time

import pytest
from playwright.async_api import Browser, expect

from tests.integration.control_plane.stack import Stack
from tests.support.chromium import watched_page
from tests.support.panel import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.docker]
XSS = "<img src=x onerror=alert(1)>"


async def wait_until_online(stack: Stack, timeout: float = 30) -> None:
    """Until the health poll (every 2 s here) has recorded the node online."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        node = await stack.admin.json("GET", f"/api/v1/nodes/{stack.node_id}")
        if node["status"] == "online" and node["clock_offset_seconds"] is not None:
            return
        await asyncio.sleep(0.2)
    pytest.fail(f"node {stack.node_id} never came online")


async def test_a_running_agent_is_up_on_the_overview_and_its_page(
    stack: Stack, browser: Browser
) -> None:
    server_id, _ = await stack.owned_server("owner@example.org")
    await stack.admin.json("PATCH", f"/api/v1/servers/{server_id}", json={"name": XSS})
    await wait_until_online(stack)

    watched = await watched_page(browser, f"http://localhost:{stack.panel.server.port}")
    page = watched.page
    await page.goto("/login?next=/admin")
    await page.get_by_label("E-mail").fill("admin@example.org")
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url("**/admin")
    await expect(page.locator('[data-count="nodes-up"]')).to_have_text("1")
    await expect(page.locator("#overview-nodes [data-health]")).to_have_text("up")
    # Shown in the browser's zone by app.js, with the UTC instant kept in the element.
    last_seen = page.locator("#overview-nodes time")
    await expect(last_seen).to_have_attribute("datetime", value=_utc_instant())
    await expect(page.locator("#overview-states")).to_contain_text("1")
    await watched.assert_clean()

    await page.get_by_role("link", name="node-1").click()
    await page.wait_for_url(f"**/admin/nodes/{stack.node_id}")
    await expect(page.locator('[data-fact="status"]')).to_have_text("up")
    await expect(page.locator('[data-fact="last-seen"] time')).to_have_count(1)
    await expect(page.locator('[data-fact="clock-offset"]')).to_have_text(_offset())
    await expect(page.locator('[data-fact="memory"]')).to_contain_text("512 MiB of no limit")
    await expect(page.locator('[data-fact="disk"]')).to_contain_text("1.0 GiB of no limit")
    servers = page.locator("#node-servers tbody tr")
    await expect(servers).to_have_count(1)
    await expect(servers.first.locator("td").first).to_have_text(XSS)
    await expect(servers.first).to_contain_text("owner@example.org")
    assert await page.locator("#node-servers img").count() == 0
    # A node with servers is not offered for deletion.
    await expect(page.get_by_role("button", name="Delete node")).to_have_count(0)
    await watched.assert_clean()


def _utc_instant() -> re.Pattern[str]:
    return re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def _offset() -> re.Pattern[str]:
    return re.compile(r"^[+-]\d+\.\d{3} s$")
