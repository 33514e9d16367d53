"""The real control-plane app on a migrated database of each kind (SQLite and PostgreSQL).

``stack`` adds a real agent process the control plane commands (tests marked ``docker``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from playwright.async_api import Browser
from pytest_aiohttp import AiohttpClient, AiohttpServer
from sqlalchemy.ext.asyncio import AsyncEngine

from control_plane.app import create_app
from control_plane.scheduling.clock import ManualClock
from control_plane.settings import ControlPlaneSettings, load_settings
from shared.command_keys import write_private_key
from tests.integration.control_plane.stack import Stack, running_stack
from tests.support.chromium import chromium
from tests.support.clocks import MonotonicClock, WallClock
from tests.support.panel import Panel
from tests.support.smtp import MailCatcher
from tests.support.world import World, build_world

AUTH_SECRET = "k3Jd9QmX2vLp7RtN4wYb8ZcF6hGs1aEu0iOy5TnM"
UNLIMITED = ",".join(
    f"{name}=1000000/60"
    for name in (
        "authentication",
        "sensitive",
        "api",
        "power",
        "files",
        "invitations",
        "sign_in_account",
    )
)


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> ControlPlaneSettings:
    return load_settings(
        {
            "STELLAR_DATABASE_URL": database_url,
            "STELLAR_AUTH_SECRET": AUTH_SECRET,
            "STELLAR_BCRYPT_COST": "10",
            # The walks send hundreds of requests from one address; the limits have tests of
            # their own (test_rate_limits.py).
            "STELLAR_RATE_LIMITS": UNLIMITED,
        }
    )


@pytest.fixture
async def panel(
    engine: AsyncEngine,
    settings: ControlPlaneSettings,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
) -> Panel:
    """``engine`` migrated the database; the app opens its own engine on it."""
    server = await aiohttp_server(create_app(settings, background_jobs=False))
    return Panel(server, aiohttp_client)


@pytest.fixture
async def world(panel: Panel) -> World:
    """Two owners, a sub-user and a key each, on a node nobody runs (tests/support/world.py)."""
    return await build_world(panel)


@pytest.fixture
def wall_clock() -> WallClock:
    """The app's wall clock, moved by hand (give it to the app: mfa_support.mfa_panel)."""
    return WallClock()


@pytest.fixture
def rate_clock() -> MonotonicClock:
    """The rate limiter's clock, moved by hand (give it to the app as its ``clock``)."""
    return MonotonicClock()


@pytest.fixture
def stack_environment() -> dict[str, str]:
    """The control plane's environment in ``stack`` (a module may set its own)."""
    return {
        "STELLAR_AUTH_SECRET": AUTH_SECRET,
        "STELLAR_BCRYPT_COST": "10",
        "STELLAR_RATE_LIMITS": UNLIMITED,
        "STELLAR_NODE_HEALTH_INTERVAL_SECONDS": "2",
        "STELLAR_BACKUP_LIMIT": "2",
    }


@pytest.fixture
def stack_agent_settings() -> dict[str, Any]:
    """The agent's settings in ``stack`` over the test defaults (a module may set its own)."""
    return {}


@pytest.fixture
async def stack(
    docker_images: None,
    stack_environment: dict[str, str],
    stack_agent_settings: dict[str, Any],
    engine: AsyncEngine,
    database_url: str,
    tmp_path: Path,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
) -> AsyncIterator[Stack]:
    """The control plane with one real agent (``engine`` migrated the database)."""
    async with running_stack(
        environment=stack_environment,
        database_url=database_url,
        tmp_path=tmp_path,
        aiohttp_server=aiohttp_server,
        aiohttp_client=aiohttp_client,
        agent_settings=stack_agent_settings,
    ) as running:
        yield running


@pytest.fixture
def schedule_clock() -> ManualClock:
    """The scheduler's clock, moved by hand: 28 March 2026, 12:00:10 UTC (the eve of
    Europe's spring-forward night)."""
    return ManualClock(dt.datetime(2026, 3, 28, 12, 0, 10, tzinfo=dt.UTC))


@pytest.fixture
async def scheduled_world(
    engine: AsyncEngine,
    settings: ControlPlaneSettings,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
    schedule_clock: ManualClock,
) -> World:
    """``world`` on an app whose scheduler runs on ``schedule_clock`` and ticks only when a
    test calls its ``tick``."""
    app = create_app(settings, background_jobs=False, scheduler_clock=schedule_clock)
    return await build_world(Panel(await aiohttp_server(app), aiohttp_client))


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Debian's Chromium, driven by Playwright, for a browser test (tests/support/chromium.py)."""
    async with chromium() as running:
        yield running


@pytest.fixture
async def verifying_world(
    engine: AsyncEngine,
    database_url: str,
    catcher: MailCatcher,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
) -> AsyncIterator[World]:
    """The world with mail (the module's ``catcher``), open registration, and every address
    to be verified before anything else."""
    # (Imported here: mail_support imports this module's settings.)
    from tests.integration.control_plane.mail_support import mail_world

    async with mail_world(
        database_url,
        catcher,
        aiohttp_server,
        aiohttp_client,
        STELLAR_REGISTRATION="open",
        STELLAR_REQUIRE_EMAIL_VERIFICATION="true",
    ) as world:
        yield world


def signing_settings(database_url: str, tmp_path: Path, **more: str) -> ControlPlaneSettings:
    """The settings of a control plane that signs node commands with a new key, written to
    ``tmp_path / "signing.key"``; ``more``: other settings by their variable's name."""
    key_file = tmp_path / "signing.key"
    write_private_key(key_file, Ed25519PrivateKey.generate())
    return load_settings(
        {
            "STELLAR_DATABASE_URL": database_url,
            "STELLAR_AUTH_SECRET": AUTH_SECRET,
            "STELLAR_BCRYPT_COST": "10",
            "STELLAR_RATE_LIMITS": UNLIMITED,
            "STELLAR_SIGNING_KEY_FILE": str(key_file),
            **more,
        }
    )


@pytest.fixture
async def signing_world(
    engine: AsyncEngine,
    database_url: str,
    tmp_path: Path,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
) -> World:
    """The world on a control plane with a signing key (``tmp_path / "signing.key"``: it
    opens the node's stream), no background jobs (a test starts the listener it needs;
    other replicas take its settings)."""
    settings = signing_settings(database_url, tmp_path)
    panel = Panel(await aiohttp_server(create_app(settings, background_jobs=False)), aiohttp_client)
    return await build_world(panel)
