"""The console page in a real Chromium, against the real control plane, a real agent and a real
game container (busybox's fake game).

The game prints ANSI colours (16-colour and 24-bit) and an XSS payload before it starts: the
terminal shows them as coloured text, nothing is injected, no dialog fires, and the page's
strict CSP reports no violation although xterm.js creates its own ``<style>`` elements (they
carry the response's nonce). Power buttons are the server's decision: a sub-user without
``control.*`` sees none, and the API and the socket refuse when one is forced.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import pytest
from playwright.async_api import Browser, Page, ViewportSize, expect

from control_plane.keys import CONSOLES
from tests.integration.control_plane.stack import Stack, wait_for_state
from tests.support.chromium import Watched, watched_page
from tests.support.containers import EGG_IMAGE
from tests.support.panel import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.docker]
XSS = "<img src=x onerror=alert(1)>"
# The game's first lines: a red word (a 16-colour class), an orange one (24-bit: a style set
# through the CSSOM) and the payload, printed by a shell before the fake game takes over.
STARTUP = (
    "/bin/sh -c \"printf '\\033[31mred-alert\\033[0m \\033[38;2;255;128;0mtruecolour\\033[0m"
    " %s\\n' '" + XSS + "'; exec /usr/local/bin/fake-game\""
)
PHONE: ViewportSize = {"width": 360, "height": 740}


async def colourful_server(stack: Stack, email: str, startup: str = STARTUP) -> tuple[str, str]:
    """A server of a blueprint whose game prints colours and the payload (or runs ``startup``);
    its id and its owner's."""
    blueprint = await stack.admin.json(
        "POST",
        "/api/v1/blueprints",
        status=201,
        json={
            "name": "colourful game",
            # The fake game's files without its entrypoint: the startup runs as it is.
            "images": [{"name": "default", "image": EGG_IMAGE}],
            "startup": startup,
            "stop": {"type": "command", "value": "stop"},
        },
    )
    await stack.add_ports(1)
    owner_id = await stack.panel.create_user(email)
    body = {**stack.server_body(owner_id), "blueprint_id": blueprint["id"]}
    created = await stack.admin.json("POST", "/api/v1/servers", status=201, json=body)
    stack.servers.append(created["id"])
    return created["id"], owner_id


def address(stack: Stack) -> str:
    # "localhost": the console socket's Origin check compares with the Host the page used.
    return f"http://localhost:{stack.panel.server.port}"


async def open_console(watched: Watched, server_id: str, email: str) -> Page:
    """Sign in through the page the console sends a visitor to, and come back to it."""
    page = watched.page
    await page.goto(f"/servers/{server_id}")
    await page.get_by_label("E-mail").fill(email)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(f"**/servers/{server_id}")
    await expect(page.locator("[data-console]")).to_have_attribute("data-connected", "true")
    return page


def terminal(page: Page) -> Any:
    return page.locator("#terminal .xterm-rows")


async def leave(watched: Watched, stack: Stack) -> None:
    """Close the browser's pages and wait until the control plane has let go of their console
    sockets: none is left mid-message when the app shuts down after the test."""
    await watched.context.close()
    consoles = stack.panel.server.app[CONSOLES]
    async with asyncio.timeout(20):
        while consoles.total():
            await asyncio.sleep(0.05)


async def test_the_console_shows_output_as_text_runs_commands_power_and_graphs(
    stack: Stack, browser: Browser
) -> None:
    server_id, _ = await colourful_server(stack, "gamer@example.org")
    owner = await stack.panel.browser()
    await owner.login("gamer@example.org")
    await wait_for_state(owner, server_id, "offline")
    watched = await watched_page(browser, address(stack))
    page = await open_console(watched, server_id, "gamer@example.org")
    await expect(page.get_by_role("heading", name="survival")).to_be_visible()
    power = page.get_by_role("group", name="Power")
    for action in ("Start", "Stop", "Restart", "Kill"):
        await expect(power.get_by_role("button", name=action, exact=True)).to_be_visible()

    await power.get_by_role("button", name="Start", exact=True).click()
    await expect(terminal(page)).to_contain_text("fake-game started", timeout=30_000)
    await expect(page.locator("[data-state]")).to_have_text("running", timeout=30_000)
    # Colours are classes and CSSOM styles; the payload is text: no element, no dialog.
    await expect(terminal(page)).to_contain_text(XSS)
    await expect(terminal(page).locator("span.xterm-fg-1", has_text="red-alert")).to_have_count(1)
    orange = terminal(page).locator("span", has_text="truecolour")
    assert "255, 128, 0" in await orange.evaluate("e => getComputedStyle(e).color")
    assert await page.locator("#terminal img").count() == 0

    command = page.get_by_label("Command")
    marker = f"reply-{secrets.token_hex(4)}"
    await command.fill(f"say {marker}")
    await command.press("Enter")
    await expect(terminal(page)).to_contain_text(marker)
    await expect(command).to_have_value("")
    await command.press("ArrowUp")  # history
    await expect(command).to_have_value(f"say {marker}")
    await command.press("ArrowDown")
    await expect(command).to_have_value("")

    # Live samples reach the graphs (network needs two of them for a rate).
    for graph in ("cpu", "memory", "network"):
        figure = page.locator(f'[data-graph="{graph}"]')
        await expect(figure).not_to_have_attribute("data-points", "0", timeout=20_000)
    await expect(page.locator('[data-graph="memory"] [data-latest]')).to_contain_text("MiB")

    await power.get_by_role("button", name="Stop", exact=True).click()
    await expect(terminal(page)).to_contain_text("stopping", timeout=30_000)
    await expect(page.locator("[data-state]")).to_have_text("offline", timeout=30_000)
    await watched.assert_clean()
    await leave(watched, stack)


async def test_a_sub_user_without_control_sees_no_power_and_is_refused_when_forcing_it(
    stack: Stack, browser: Browser
) -> None:
    server_id, _ = await colourful_server(stack, "owner@example.org")
    owner = await stack.panel.browser()
    await owner.login("owner@example.org")
    await stack.panel.create_user("helper@example.org")
    await owner.json(
        "POST",
        f"/api/v1/servers/{server_id}/users",
        status=201,
        json={"email": "helper@example.org", "permissions": ["console.read"]},
    )
    await wait_for_state(owner, server_id, "offline")
    watched = await watched_page(browser, address(stack))
    await watched.page.set_viewport_size(PHONE)
    page = await open_console(watched, server_id, "helper@example.org")
    # xterm.js's <style> elements carry this response's nonce, which the policy names.
    response = await page.reload()
    assert response is not None
    await expect(page.locator("[data-console]")).to_have_attribute("data-connected", "true")
    nonce = await page.locator('meta[name="style-nonce"]').get_attribute("content")
    csp = response.headers["content-security-policy"]
    assert f"style-src 'self' 'nonce-{nonce}';" in csp
    assert "unsafe" not in csp
    stamped = await page.evaluate(
        "(n) => [...document.querySelectorAll('#terminal style')].map((s) => s.nonce === n)", nonce
    )
    assert stamped == [True, True]
    # Watching only: no power buttons, no command input, no graphs (no stats.read).
    await expect(page.get_by_role("group", name="Power")).to_have_count(0)
    await expect(page.locator("[data-power]")).to_have_count(0)
    await expect(page.get_by_label("Command")).to_have_count(0)
    await expect(page.locator("[data-graph]")).to_have_count(0)
    # At 360 px the terminal fits the screen: nothing scrolls sideways.
    overflow = await page.evaluate("document.documentElement.scrollWidth")
    assert overflow <= PHONE["width"]

    # Forced from the page's own origin with its session and CSRF token: refused, both ways.
    refused = await page.evaluate(
        """async (id) => {
            const token = document.querySelector('meta[name="csrf-token"]').content;
            const response = await fetch(`/api/v1/servers/${id}/power`, {
                method: "POST", credentials: "same-origin",
                headers: {"Content-Type": "application/json", "X-CSRF-Token": token},
                body: JSON.stringify({action: "start"}),
            });
            const socket = new WebSocket(`ws://${location.host}/api/v1/servers/${id}/console`);
            const answer = await new Promise((resolve) => {
                socket.onopen = () => socket.send(
                    JSON.stringify({event: "set state", args: ["start"]}));
                socket.onmessage = (m) => {
                    const frame = JSON.parse(m.data);
                    if (frame.event === "error") { socket.close(); resolve(frame.args[0]); }
                };
            });
            return {status: response.status, body: await response.json(), socket: answer};
        }""",
        server_id,
    )
    assert refused["status"] == 403, refused
    assert refused["body"]["error"]["message"] == (
        "you lack the 'control.start' permission on this server"
    )
    assert refused["socket"] == "you lack the 'control.start' permission on this server"
    assert (await owner.json("GET", f"/api/v1/servers/{server_id}"))["state"] == "offline"
    await watched.assert_clean()

    # The policy is not vacuous: a style from markup (without the nonce) is refused, reported.
    await page.evaluate(
        "document.body.insertAdjacentHTML('beforeend', '<style>body { color: red }</style>')"
    )
    await page.wait_for_function("window.__cspViolations.length > 0")
    [violation] = await watched.csp_violations()
    assert violation.startswith("style-src-elem inline"), violation
    await leave(watched, stack)


async def test_a_lost_node_shows_the_notice_and_the_page_reconnects(
    stack: Stack, browser: Browser
) -> None:
    server_id, _ = await colourful_server(stack, "patient@example.org")
    owner = await stack.panel.browser()
    await owner.login("patient@example.org")
    await owner.json(
        "POST", f"/api/v1/servers/{server_id}/power", status=202, json={"action": "start"}
    )
    await wait_for_state(owner, server_id, "running")
    watched = await watched_page(browser, address(stack))
    page = await open_console(watched, server_id, "patient@example.org")
    await expect(terminal(page)).to_contain_text("fake-game started")
    notice = page.locator("[data-console-notice]")
    await expect(notice).to_be_hidden()

    # The agent goes away: the control plane retries for ~8 s, then closes the page's socket.
    await asyncio.to_thread(stack.agent.stop)
    try:
        await expect(notice).to_contain_text("Disconnected from the console", timeout=30_000)
        await expect(page.locator("[data-console]")).to_have_attribute("data-connected", "false")
    finally:
        await asyncio.to_thread(stack.agent.start)
    # Back: the page reconnects by itself, the notice goes, the recent lines are shown again.
    await expect(page.locator("[data-console]")).to_have_attribute(
        "data-connected", "true", timeout=40_000
    )
    await expect(notice).to_be_hidden()
    await expect(terminal(page)).to_contain_text("fake-game started", timeout=20_000)
    marker = f"back-{secrets.token_hex(4)}"
    await page.get_by_label("Command").fill(f"say {marker}")
    await page.get_by_label("Command").press("Enter")
    await expect(terminal(page)).to_contain_text(marker, timeout=20_000)
    # Chromium logs each refused handshake while the node was away (the page cannot stop
    # it); nothing else may be in the console.
    others = [e for e in watched.console_errors if not e.startswith("WebSocket connection to")]
    assert others == []
    watched.console_errors.clear()
    await watched.assert_clean()
    await leave(watched, stack)
