"""The guide's security headers on every response: 200, 400, 401, 404, 429 and the 500 path;
HSTS only in production; CORS only for configured origins."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from multidict import CIMultiDictProxy
from pytest_aiohttp import AiohttpClient, AiohttpServer
from sqlalchemy.ext.asyncio import AsyncEngine

from control_plane.app import create_app
from control_plane.settings import load_settings
from shared.command_keys import write_private_key
from tests.integration.control_plane.conftest import AUTH_SECRET, UNLIMITED
from tests.support.panel import Panel
from tests.support.world import build_world

EXPECTED = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "X-XSS-Protection": "1; mode=block",
    "Referrer-Policy": "strict-origin-when-cross-origin",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
}


def assert_headers(headers: CIMultiDictProxy[str], *, hsts: bool) -> None:
    for name, value in EXPECTED.items():
        assert headers.get(name) == value, name
    policy = headers["Permissions-Policy"]
    for feature in ("camera=()", "microphone=()", "geolocation=()", "payment=()", "usb=()"):
        assert feature in policy
    if hsts:
        assert headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
    else:
        assert "Strict-Transport-Security" not in headers


# A WebSocket handshake's headers (the key is RFC 6455's sample nonce).
UPGRADE = {
    "Connection": "Upgrade",
    "Upgrade": "websocket",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
}


async def make_panel(
    server_factory: AiohttpServer, client_factory: AiohttpClient, **env: str
) -> Panel:
    settings = load_settings(
        {"STELLAR_AUTH_SECRET": AUTH_SECRET, "STELLAR_BCRYPT_COST": "10", **env}
    )
    return Panel(await server_factory(create_app(settings, background_jobs=False)), client_factory)


async def test_headers_on_200_400_401_404_and_429(
    engine: AsyncEngine,
    database_url: str,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
) -> None:
    panel = await make_panel(
        aiohttp_server,
        aiohttp_client,
        STELLAR_DATABASE_URL=database_url,
        STELLAR_RATE_LIMITS="authentication=2/60",
    )
    browser = await panel.browser()
    answers = {
        200: await browser.request("GET", "/healthz"),
        400: await browser.request("POST", "/api/v1/auth/login", json={"email": 1}),
        401: await browser.request("GET", "/api/v1/auth/session"),
        404: await browser.request("GET", "/api/v1/no/such/route"),
    }
    await browser.request("POST", "/api/v1/auth/login", json={"email": "a@b.cd", "password": "x"})
    answers[429] = await browser.request(
        "POST", "/api/v1/auth/login", json={"email": "a@b.cd", "password": "x"}
    )
    for status, response in answers.items():
        assert response.status == status
        assert_headers(response.headers, hsts=False)
    assert "Access-Control-Allow-Origin" not in answers[200].headers  # CORS off by default


async def test_headers_on_the_server_error_path(
    aiohttp_server: AiohttpServer, aiohttp_client: AiohttpClient
) -> None:
    # A database that does not answer (nothing listens on the discard port): the request
    # fails on the server side (503, control_plane/db/faults.py).
    panel = await make_panel(
        aiohttp_server,
        aiohttp_client,
        STELLAR_DATABASE_URL="postgresql://stellar:stellar@127.0.0.1:9/none",
    )
    response = await (await panel.browser()).request(
        "POST", "/api/v1/auth/login", json={"email": "a@example.org", "password": "p" * 12}
    )
    assert response.status == 503
    body = await response.json()
    assert body["error"]["code"] == "database_unavailable"
    assert "Traceback" not in await response.text()
    assert_headers(response.headers, hsts=False)


async def test_hsts_only_in_production(
    engine: AsyncEngine,
    database_url: str,
    tmp_path: Path,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
) -> None:
    key = tmp_path / "signing.key"
    write_private_key(key, Ed25519PrivateKey.generate())
    panel = await make_panel(
        aiohttp_server,
        aiohttp_client,
        STELLAR_DATABASE_URL=database_url,
        STELLAR_ENV="production",
        STELLAR_PUBLIC_URL="https://panel.example.com",
        STELLAR_ENCRYPTION_KEYS="k1:" + "3f9a1c7e5b2d8046" * 4,
        STELLAR_SIGNING_KEY_FILE=str(key),
    )
    response = await (await panel.browser()).request("GET", "/api/v1/no/such/route")
    assert response.status == 404
    assert_headers(response.headers, hsts=True)


@pytest.mark.parametrize("origin", ["https://panel.example.com", "https://evil.example.net"])
async def test_cors_only_for_the_allow_list(
    engine: AsyncEngine,
    database_url: str,
    origin: str,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
) -> None:
    panel = await make_panel(
        aiohttp_server,
        aiohttp_client,
        STELLAR_DATABASE_URL=database_url,
        STELLAR_CORS_ORIGINS="https://panel.example.com",
    )
    browser = await panel.browser()
    preflight = await browser.request(
        "OPTIONS",
        "/api/v1/auth/login",
        headers={"Origin": origin, "Access-Control-Request-Method": "POST"},
    )
    allowed = origin == "https://panel.example.com"
    assert (preflight.headers.get("Access-Control-Allow-Origin") == origin) is allowed
    if allowed:
        assert preflight.status == 204
        assert "X-CSRF-Token" in preflight.headers["Access-Control-Allow-Headers"]


async def test_console_websocket_from_another_origin_is_refused(
    engine: AsyncEngine,
    database_url: str,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
) -> None:
    """Cross-site WebSocket hijacking: a page elsewhere cannot ride the owner's cookie."""
    panel = await make_panel(
        aiohttp_server,
        aiohttp_client,
        STELLAR_DATABASE_URL=database_url,
        STELLAR_PUBLIC_URL="http://panel.example.com",
        STELLAR_RATE_LIMITS=UNLIMITED,
    )
    world = await build_world(panel)
    console = f"/api/v1/servers/{world.ids['alice_server']}/console"
    evil = await world.alice.request(
        "GET", console, headers={**UPGRADE, "Origin": "https://evil.example.net"}
    )
    assert evil.status == 403
    assert "another origin" in (await evil.json())["error"]["message"]
    # The panel's own origin passes the check and gets as far as the (unreachable) node.
    own = await world.alice.request(
        "GET", console, headers={**UPGRADE, "Origin": "http://panel.example.com"}
    )
    assert own.status == 503


async def test_without_a_public_url_the_console_takes_upgrades_from_its_own_host_only(
    engine: AsyncEngine,
    database_url: str,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
) -> None:
    panel = await make_panel(
        aiohttp_server,
        aiohttp_client,
        STELLAR_DATABASE_URL=database_url,
        STELLAR_RATE_LIMITS=UNLIMITED,
    )
    world = await build_world(panel)
    console = f"/api/v1/servers/{world.ids['alice_server']}/console"
    host = f"{panel.server.host}:{panel.server.port}"
    for origin in ("https://evil.example.net", f"http://{panel.server.host}:1", "null", "http://["):
        evil = await world.alice.request("GET", console, headers={**UPGRADE, "Origin": origin})
        assert evil.status == 403, origin
    own = await world.alice.request("GET", console, headers={**UPGRADE, "Origin": f"http://{host}"})
    assert own.status == 503  # let through, as far as the (unreachable) node
