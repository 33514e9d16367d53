"""The control plane with its webhook dispatcher running, a receiver on loopback and a
resolver the test controls (tests/support/webhook_receiver.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp.test_utils import TestServer
from pytest_aiohttp import AiohttpClient, AiohttpServer

from control_plane.app import create_app
from control_plane.settings import ControlPlaneSettings, load_settings
from tests.integration.control_plane.conftest import AUTH_SECRET, UNLIMITED
from tests.support.panel import Browser, Panel
from tests.support.webhook_receiver import Names, Receiver

ENCRYPTION_KEY = "k1:" + "5f1c0e9a7b3d2f4e6a8c0b1d3e5f7a9b2c4d6e8f0a1b3c5d7e9f1a2b3c4d5e6f"
RECEIVER_HOST = "hooks.test"
T = TypeVar("T")


def webhook_settings(database_url: str, **overrides: str) -> ControlPlaneSettings:
    """Short timeouts and backoff; loopback allowed for names (the test setting)."""
    env = {
        "STELLAR_DATABASE_URL": database_url,
        "STELLAR_AUTH_SECRET": AUTH_SECRET,
        "STELLAR_BCRYPT_COST": "10",
        "STELLAR_RATE_LIMITS": UNLIMITED,
        "STELLAR_ENCRYPTION_KEYS": ENCRYPTION_KEY,
        "STELLAR_WEBHOOK_TEST_ALLOW_NETWORKS": "127.0.0.0/8",
        "STELLAR_WEBHOOK_TIMEOUT_SECONDS": "2",
        "STELLAR_WEBHOOK_RETRY_BASE_SECONDS": "0.2",
        "STELLAR_WEBHOOK_POLL_SECONDS": "0.05",
        "STELLAR_WEBHOOK_CONCURRENCY": "8",
    }
    env.update(overrides)
    return load_settings(env)


@dataclass
class HookPanel:
    """The panel under test, with the receiver it delivers to."""

    panel: Panel
    receiver: Receiver
    receiver_server: TestServer
    names: Names

    @property
    def url(self) -> str:
        return f"http://{RECEIVER_HOST}:{self.receiver_server.port}/in"

    async def create(self, browser: Browser, path: str, **fields: Any) -> dict[str, Any]:
        body = {"name": "hook", "url": self.url, "events": ["user.signed_in"], **fields}
        created: dict[str, Any] = await browser.json("POST", path, status=201, json=body)
        return created


async def start_panel(
    settings: ControlPlaneSettings,
    names: Names,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
    *,
    background_jobs: bool = True,
) -> Panel:
    app = create_app(settings, background_jobs=background_jobs, resolver=names)
    return Panel(await aiohttp_server(app), aiohttp_client)


async def start_receiver(
    receiver: Receiver, names: Names, aiohttp_server: AiohttpServer
) -> TestServer:
    server = await aiohttp_server(receiver.app())
    names.answers[RECEIVER_HOST] = ["127.0.0.1"]
    return server


async def eventually(
    probe: Callable[[], Awaitable[T]], done: Callable[[T], bool], timeout: float = 20.0
) -> T:
    """Ask ``probe`` until ``done`` holds for its answer (state reached), or fail."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if done(value):
            return value
        assert time.monotonic() < deadline, f"not reached in {timeout} s: {value!r}"
        await asyncio.sleep(0.05)


async def deliveries(browser: Browser, hook_path: str) -> list[dict[str, Any]]:
    page = await browser.json("GET", f"{hook_path}/deliveries?per_page=100")
    return list(page["data"])
