"""A control plane with encryption keys and a hand-moved wall clock, and 2FA helpers."""

from __future__ import annotations

import subprocess
import time
from typing import Any

from pytest_aiohttp import AiohttpClient, AiohttpServer

from control_plane.app import create_app
from control_plane.settings import load_settings
from tests.conftest import require_tool
from tests.integration.control_plane.conftest import AUTH_SECRET, UNLIMITED
from tests.support.clocks import MonotonicClock, WallClock
from tests.support.panel import PASSWORD, Browser, Panel

ENCRYPTION_KEYS = "t1:5f1c9e2a7b3d4c6e8f0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f6a"


async def mfa_panel(
    database_url: str,
    server_factory: AiohttpServer,
    client_factory: AiohttpClient,
    wall_clock: WallClock,
    *,
    rate_clock: MonotonicClock | None = None,
    env: dict[str, str] | None = None,
) -> Panel:
    """The real app; rate limits off unless ``rate_clock`` is given (then the defaults)."""
    values = {
        "STELLAR_DATABASE_URL": database_url,
        "STELLAR_AUTH_SECRET": AUTH_SECRET,
        "STELLAR_BCRYPT_COST": "10",
        "STELLAR_ENCRYPTION_KEYS": ENCRYPTION_KEYS,
        **({} if rate_clock else {"STELLAR_RATE_LIMITS": UNLIMITED}),
        **(env or {}),
    }
    app = create_app(
        load_settings(values),
        background_jobs=False,
        clock=rate_clock or time.monotonic,
        wall_clock=wall_clock,
    )
    return Panel(await server_factory(app), client_factory)


def oathtool(secret: str, unix_time: float) -> str:
    """The code an independent implementation (oath-toolkit) computes for ``unix_time``."""
    require_tool("oathtool", "oathtool")
    done = subprocess.run(
        ["oathtool", "--totp", "-b", secret, f"--now=@{int(unix_time)}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


async def enrol(browser: Browser, clock: WallClock) -> tuple[str, list[str]]:
    """Set up and enable TOTP; the secret and the recovery codes. Moves the clock one step."""
    setup = await browser.json("POST", "/api/v1/account/2fa/setup")
    secret = str(setup["secret"])
    enabled = await browser.json(
        "POST",
        "/api/v1/account/2fa/enable",
        json={"code": oathtool(secret, clock.now), "password": PASSWORD},
    )
    clock.advance(30)  # that step is spent
    return secret, list(enabled["recovery_codes"])


async def start_login(browser: Browser, email: str, password: str = PASSWORD) -> dict[str, Any]:
    """Password step of a 2FA user: the pending answer (its CSRF token is remembered)."""
    body = await browser.json(
        "POST", "/api/v1/auth/login", json={"email": email, "password": password}
    )
    assert body["mfa_required"] is True, body
    browser.csrf = body["csrf_token"]
    return dict(body)
