"""The account pages' browser tests: the real app served as ``http://localhost:PORT`` (the
origin passkeys need: browsers refuse them on an IP address, and the app's WebAuthn origin
must be the page's), with encryption keys for second factors and a hand-moved wall clock
for TOTP codes; and what a person does on the sign-in page."""

from __future__ import annotations

import functools

from playwright.async_api import expect
from pytest_aiohttp import AiohttpClient, AiohttpServer

from tests.integration.control_plane.mfa_support import mfa_panel
from tests.support.agent_process import free_port
from tests.support.chromium import Watched
from tests.support.clocks import WallClock
from tests.support.panel import PASSWORD, Panel

XSS = "<img src=x onerror=alert(1)>"


async def localhost_panel(
    database_url: str,
    server_factory: AiohttpServer,
    client_factory: AiohttpClient,
    wall_clock: WallClock,
) -> Panel:
    """The app on a port chosen first, so that its WebAuthn origin names that port."""
    port = free_port()
    env = {"STELLAR_WEBAUTHN_ORIGIN": f"http://localhost:{port}"}
    serve = functools.partial(server_factory, port=port)
    return await mfa_panel(database_url, serve, client_factory, wall_clock, env=env)


def base_url(panel: Panel) -> str:
    return f"http://localhost:{panel.server.port}"


async def sign_in(watched: Watched, email: str, password: str = PASSWORD) -> None:
    """Sign in on the sign-in page with a password (no second factor enrolled)."""
    page = watched.page
    await page.goto("/login")
    await page.get_by_label("E-mail").fill(email)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("link", name=email)).to_be_visible()


async def sign_out(watched: Watched) -> None:
    await watched.page.get_by_role("button", name="Sign out").click()
    await watched.page.wait_for_url("**/login")
