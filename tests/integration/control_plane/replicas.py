"""Control-plane replicas as real processes on one PostgreSQL (and Redis), for the tests of
``test_replicas*.py``: their shared configuration, a migrated database, an administrator."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from control_plane.db.engine import create_engine, session_factory
from control_plane.db.migrate import upgrade
from control_plane.db.session import transaction
from control_plane.services import users
from shared.command_keys import write_private_key
from tests.integration.control_plane.conftest import AUTH_SECRET, UNLIMITED
from tests.support.control_plane_process import ControlPlaneProcess, RemoteBrowser
from tests.support.panel import PASSWORD

REDIS_URL = os.environ.get("STELLAR_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
ENCRYPTION_KEYS = "k1:" + "5e" * 8 + "a1b2c3d4e5f60718" * 3
ADMIN = "admin@example.org"


async def prepare_database(url: str, *emails: str) -> None:
    """Migrate ``url`` and create the accounts (the first one an administrator)."""
    engine = create_engine(url)
    try:
        await upgrade(engine)
        async with transaction(session_factory(engine)) as db:
            for index, email in enumerate(emails):
                await users.create_user(
                    db, email=email, password=PASSWORD, is_admin=index == 0, bcrypt_cost=10
                )
    finally:
        await engine.dispose()


def replica_environment(database_url: str, key_file: Path, **more: str) -> dict[str, str]:
    """What every replica of one installation shares."""
    return {
        "STELLAR_DATABASE_URL": database_url,
        "STELLAR_AUTH_SECRET": AUTH_SECRET,
        "STELLAR_SIGNING_KEY_FILE": str(key_file),
        "STELLAR_ENCRYPTION_KEYS": ENCRYPTION_KEYS,
        "STELLAR_BCRYPT_COST": "10",
        "STELLAR_RATE_LIMITS": UNLIMITED,
        "REDIS_URL": REDIS_URL,
        "STELLAR_METRICS_SCRAPERS": "127.0.0.1/32",
        "STELLAR_NODE_HEALTH_INTERVAL_SECONDS": "2",
        **more,
    }


def signing_key(root: Path) -> tuple[Path, Ed25519PrivateKey]:
    key_file = root / "signing.key"
    private = Ed25519PrivateKey.generate()
    write_private_key(key_file, private)
    return key_file, private


@asynccontextmanager
async def running_replicas(
    root: Path, environment: Mapping[str, str], count: int = 2
) -> AsyncIterator[list[ControlPlaneProcess]]:
    """``count`` replicas started (each on its own port), stopped after."""
    replicas = [
        ControlPlaneProcess(root, dict(environment), name=f"replica-{index}")
        for index in range(count)
    ]
    try:
        for replica in replicas:
            replica.start()
        yield replicas
    finally:
        for replica in replicas:
            replica.stop()


async def metrics_of(replica: ControlPlaneProcess) -> str:
    """The replica's /metrics (the test's loopback address is an allowed scraper)."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{replica.base_url}/metrics", timeout=aiohttp.ClientTimeout(total=5)) as got,
    ):
        assert got.status == 200, await got.text()
        return await got.text()


async def followers(replicas: list[ControlPlaneProcess], node: str) -> list[ControlPlaneProcess]:
    """The replicas that say they follow the node's event stream right now."""
    found = []
    for replica in replicas:
        if not replica.running:
            continue
        text = await metrics_of(replica)
        if replica.metric(text, "stellar_node_event_stream_connected", node=node) == 1.0:
            found.append(replica)
    return found


async def signed_in(replica: ControlPlaneProcess, email: str) -> RemoteBrowser:
    browser = RemoteBrowser.on(replica)
    await browser.login(email)
    return browser


def elapsed_since(started: float) -> float:
    return time.monotonic() - started


def fail_with_logs(message: str, replicas: list[ControlPlaneProcess]) -> None:
    logs = "\n".join(f"--- {r.name}\n{r.log_text()[-4000:]}" for r in replicas)
    pytest.fail(f"{message}\n{logs}")
