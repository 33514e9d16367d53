"""What the panel's browser tests share: a control plane configured for the test, its
address as a browser opens it, and signing in on the page as a person does."""

from __future__ import annotations

import time

from playwright.async_api import Page
from pytest_aiohttp import AiohttpClient, AiohttpServer

from control_plane.app import create_app
from control_plane.settings import load_settings
from tests.integration.control_plane.conftest import AUTH_SECRET, UNLIMITED
from tests.integration.control_plane.mfa_support import ENCRYPTION_KEYS
from tests.support.clocks import WallClock
from tests.support.panel import PASSWORD, Panel


def environment(database_url: str, **extra: str) -> dict[str, str]:
    """Registration open, second factors stored encrypted, no rate limits (unless ``extra``
    says otherwise)."""
    return {
        "STELLAR_DATABASE_URL": database_url,
        "STELLAR_AUTH_SECRET": AUTH_SECRET,
        "STELLAR_BCRYPT_COST": "10",
        "STELLAR_RATE_LIMITS": UNLIMITED,
        "STELLAR_ENCRYPTION_KEYS": ENCRYPTION_KEYS,
        "STELLAR_REGISTRATION": "open",
        **extra,
    }


async def web_panel(
    server_factory: AiohttpServer,
    client_factory: AiohttpClient,
    environment: dict[str, str],
    *,
    wall_clock: WallClock | None = None,
) -> Panel:
    """The real app (no background jobs) on ``wall_clock`` when given."""
    app = create_app(
        load_settings(environment), background_jobs=False, wall_clock=wall_clock or time.time
    )
    return Panel(await server_factory(app), client_factory)


def base_url(panel: Panel) -> str:
    # "localhost", not an IP: browsers refuse passkeys on an IP origin.
    return f"http://localhost:{panel.server.port}"


async def sign_in(page: Page, email: str, password: str = PASSWORD) -> None:
    """Fill the sign-in page's first step and send it."""
    await page.get_by_label("E-mail").fill(email)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Sign in", exact=True).click()


async def register_on_page(page: Page, email: str, password: str = PASSWORD) -> None:
    """Create an account on the register page (open registration) and send it."""
    await page.goto("/register")
    await page.get_by_label("E-mail").fill(email)
    await page.get_by_label("Password", exact=True).fill(password)
    await page.get_by_label("Password again").fill(password)
    await page.get_by_role("button", name="Create account").click()


async def csrf_of(page: Page) -> str:
    """The session's CSRF token, as the page's own code reads it."""
    token = await page.locator('meta[name="csrf-token"]').get_attribute("content")
    assert token, "the page has no CSRF token: not signed in?"
    return token
