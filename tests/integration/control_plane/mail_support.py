"""A control plane that sends mail to a real SMTP server on loopback (tests/support/smtp.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

from pytest_aiohttp import AiohttpClient, AiohttpServer

from control_plane.app import create_app
from control_plane.settings import load_settings
from tests.integration.control_plane.conftest import AUTH_SECRET, UNLIMITED
from tests.integration.control_plane.mfa_support import ENCRYPTION_KEYS
from tests.support.panel import Browser, Panel
from tests.support.smtp import MailCatcher, smtp_server
from tests.support.world import World, build_world

PUBLIC_URL = "http://panel.test"


def mail_environment(database_url: str, smtp_port: int, **extra: str) -> dict[str, str]:
    """Plain SMTP to loopback, a quick sender (poll and first retry 0.2 s), no rate limits."""
    return {
        "STELLAR_DATABASE_URL": database_url,
        "STELLAR_AUTH_SECRET": AUTH_SECRET,
        "STELLAR_BCRYPT_COST": "10",
        "STELLAR_RATE_LIMITS": UNLIMITED,
        "STELLAR_PUBLIC_URL": PUBLIC_URL,
        "STELLAR_SMTP_HOST": "127.0.0.1",
        "STELLAR_SMTP_PORT": str(smtp_port),
        "STELLAR_SMTP_SECURITY": "none",
        "STELLAR_SMTP_TIMEOUT_SECONDS": "5",
        "STELLAR_MAIL_FROM": "StellarStack <panel@example.org>",
        "STELLAR_MAIL_POLL_SECONDS": "0.2",
        "STELLAR_MAIL_RETRY_SECONDS": "0.2",
        "STELLAR_REGISTRATION": "open",
        **extra,
    }


@asynccontextmanager
async def mail_panel(
    environment: dict[str, str], server_factory: AiohttpServer, client_factory: AiohttpClient
) -> AsyncIterator[Panel]:
    """The real app with its background jobs (the mail sender among them)."""
    app = create_app(load_settings(environment), background_jobs=True)
    yield Panel(await server_factory(app), client_factory)


@asynccontextmanager
async def proxied_mail_panel(
    database_url: str,
    catcher: MailCatcher,
    server_factory: AiohttpServer,
    client_factory: AiohttpClient,
) -> AsyncIterator[Panel]:
    """A control plane that mails ``catcher``, with the default per-address rate limits,
    behind a trusted proxy on loopback (a client names any address in X-Forwarded-For)."""
    async with smtp_server(catcher) as port:
        environment = mail_environment(
            database_url, port, STELLAR_RATE_LIMITS="", STELLAR_TRUSTED_PROXIES="127.0.0.1/32"
        )
        async with mail_panel(environment, server_factory, client_factory) as panel:
            yield panel


@asynccontextmanager
async def mail_world(
    database_url: str,
    catcher: MailCatcher,
    server_factory: AiohttpServer,
    client_factory: AiohttpClient,
    **settings: str,
) -> AsyncIterator[World]:
    """The test world (tests/support/world.py) on a control plane that mails ``catcher``,
    with encryption keys and these ``settings``."""
    environment = mail_environment(
        database_url, 0, STELLAR_ENCRYPTION_KEYS=ENCRYPTION_KEYS, **settings
    )
    async with smtp_server(catcher) as port:
        environment["STELLAR_SMTP_PORT"] = str(port)
        async with mail_panel(environment, server_factory, client_factory) as panel:
            yield await build_world(panel)


def local(link: str) -> str:
    """A mailed link's path and query, to open it on the panel under test."""
    assert link.startswith(PUBLIC_URL + "/"), link
    parts = urlsplit(link)
    return f"{parts.path}?{parts.query}"


# A mailed link opens a page of the panel, which calls the API route with the same token.
API_OF_PAGE = {
    "/verify-email": "/api/v1/auth/email/verify",
    "/reset-password": "/api/v1/auth/password-reset",
}


def api_of(link: str) -> str:
    """The API route (with the token) that the page a mailed link opens calls."""
    path = urlsplit(local(link)).path
    assert path in API_OF_PAGE, link
    return f"{API_OF_PAGE[path]}?token={token_of(link)}"


def token_of(link: str) -> str:
    return link.rsplit("token=", 1)[1]


async def register(browser: Browser, email: str, password: str) -> dict[str, object]:
    body = await browser.json(
        "POST", "/api/v1/auth/register", 201, json={"email": email, "password": password}
    )
    browser.csrf = str(body["csrf_token"])
    return dict(body)
