"""The administrators' switches (registration open / closed / invite-only, e-mail
verification required), what a panel without SMTP says, and the presets' limits."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from pytest_aiohttp import AiohttpClient, AiohttpServer
from sqlalchemy.ext.asyncio import AsyncEngine

from control_plane.app import create_app
from control_plane.settings import load_settings
from tests.integration.control_plane.conftest import AUTH_SECRET
from tests.integration.control_plane.mail_support import (
    api_of,
    mail_environment,
    mail_panel,
    register,
)
from tests.support.panel import PASSWORD, Panel
from tests.support.smtp import MailCatcher, smtp_server

REGISTER = "/api/v1/auth/register"


@pytest.fixture
async def catcher() -> MailCatcher:
    return MailCatcher()


@pytest.fixture
async def smtp_port(catcher: MailCatcher) -> AsyncIterator[int]:
    async with smtp_server(catcher) as port:
        yield port


def _plain_panel_settings(database_url: str, **extra: str) -> dict[str, str]:
    return {
        "STELLAR_DATABASE_URL": database_url,
        "STELLAR_AUTH_SECRET": AUTH_SECRET,
        "STELLAR_BCRYPT_COST": "10",
        **extra,
    }


@pytest.mark.parametrize("mode", ["closed", "invite_only"])
async def test_registration_closed_or_by_invitation_refuses_sign_ups(
    engine: AsyncEngine,
    database_url: str,
    smtp_port: int,
    mode: str,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
) -> None:
    environment = mail_environment(database_url, smtp_port, STELLAR_REGISTRATION=mode)
    async with mail_panel(environment, aiohttp_server, aiohttp_client) as panel:
        browser = await panel.browser()
        refused = await browser.json(
            "POST", REGISTER, 403, json={"email": "walkin@example.org", "password": PASSWORD}
        )
        expected = "closed" if mode == "closed" else "invitation only"
        assert expected in refused["error"]["message"]
        # Nothing was created: an administrator can still create that account.
        await panel.create_user("walkin@example.org")


async def test_verification_required_allows_only_verification_until_done(
    engine: AsyncEngine,
    database_url: str,
    smtp_port: int,
    catcher: MailCatcher,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
) -> None:
    environment = mail_environment(
        database_url, smtp_port, STELLAR_REQUIRE_EMAIL_VERIFICATION="true"
    )
    async with mail_panel(environment, aiohttp_server, aiohttp_client) as panel:
        browser = await panel.browser()
        session = await register(browser, "fresh@example.org", PASSWORD)
        assert session["must_verify"] is True
        for method, path in (
            ("GET", "/api/v1/servers"),
            ("GET", "/api/v1/account/api-keys"),
            ("POST", "/api/v1/account/api-keys"),
        ):
            refused = await browser.json(method, path, 403, json={"name": "k", "scopes": ["read"]})
            assert "verify your e-mail address first" in refused["error"]["message"]
        assert (await browser.json("GET", "/api/v1/auth/session"))["must_verify"] is True
        first = await catcher.next()
        await browser.json("POST", "/api/v1/account/email/verification", 202)
        link = (await catcher.next()).link()
        assert link != first.link()
        await browser.json("GET", api_of(link))
        await browser.json("GET", "/api/v1/servers")
        assert (await browser.json("GET", "/api/v1/auth/session"))["must_verify"] is False
        # Users an administrator created count as verified; signing out is always open.
        admin_made = await panel.signed_in("made@example.org")
        await admin_made.json("GET", "/api/v1/servers")
        late = await panel.browser()
        await register(late, "late@example.org", PASSWORD)
        await late.json("POST", "/api/v1/auth/logout", 204)


async def test_without_smtp_what_needs_mail_says_so(
    engine: AsyncEngine,
    database_url: str,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
) -> None:
    settings = load_settings(_plain_panel_settings(database_url, STELLAR_REGISTRATION="open"))
    panel = Panel(await aiohttp_server(create_app(settings, background_jobs=False)), aiohttp_client)
    browser = await panel.browser()
    session = await register(browser, "nomail@example.org", PASSWORD)
    assert session["must_verify"] is False
    for method, path, body, status in (
        ("POST", "/api/v1/auth/password-reset", {"email": "nomail@example.org"}, 409),
        ("POST", "/api/v1/account/email/verification", None, 409),
        ("PUT", "/api/v1/account/alerts", {"server_crashed": True}, 409),
    ):
        refused = await browser.json(method, path, status, json=body)
        assert "sends no e-mail" in refused["error"]["message"], refused
    # Choosing no alerts is fine, and an address change applies at once (unverified).
    await browser.json("PUT", "/api/v1/account/alerts", json={})
    changed = await browser.json(
        "POST",
        "/api/v1/account/email",
        202,
        json={"email": "still@example.org", "current_password": PASSWORD},
    )
    assert "unverified" in changed["message"]


async def test_reset_and_verification_are_rate_limited_by_their_presets(
    engine: AsyncEngine,
    database_url: str,
    smtp_port: int,
    catcher: MailCatcher,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
) -> None:
    environment = mail_environment(database_url, smtp_port)
    environment.pop("STELLAR_RATE_LIMITS")  # the defaults: authentication 5/min, sensitive 3/15 min
    async with mail_panel(environment, aiohttp_server, aiohttp_client) as panel:
        browser = await panel.browser()
        for _ in range(5):
            await browser.json(
                "POST", "/api/v1/auth/password-reset", 202, json={"email": "a@example.org"}
            )
        limited = await browser.request(
            "POST", "/api/v1/auth/password-reset", json={"email": "a@example.org"}
        )
        assert limited.status == 429
        assert "Retry-After" in limited.headers
        for _ in range(3):
            await browser.json("GET", "/api/v1/auth/email/verify?token=" + "x" * 43, 400)
        limited = await browser.request("GET", "/api/v1/auth/email/verify?token=" + "x" * 43)
        assert limited.status == 429
