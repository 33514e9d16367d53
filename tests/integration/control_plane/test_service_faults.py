"""Faults of the services the control plane stands on, injected for real: its own PostgreSQL
stopped and started, its own Redis killed and restarted, SQLite's disk filled. Each is answered
clearly (503 or 507 with the common error, never a 500) and recovered from without a restart.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse
from pytest_aiohttp import AiohttpClient, AiohttpServer
from structlog.testing import capture_logs

from control_plane.app import create_app
from control_plane.db.engine import create_engine
from control_plane.db.migrate import upgrade
from control_plane.keys import METRICS
from control_plane.security import rate_limit
from control_plane.settings import load_settings
from tests.conftest import service_missing
from tests.integration.control_plane.conftest import AUTH_SECRET, UNLIMITED
from tests.support.panel import Browser, Panel
from tests.support.private_services import private_postgres, private_redis


async def migrated(url: str) -> None:
    engine = create_engine(url)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()


async def make_panel(
    aiohttp_server: AiohttpServer, aiohttp_client: AiohttpClient, **environment: str
) -> Panel:
    settings = load_settings(
        {
            "STELLAR_AUTH_SECRET": AUTH_SECRET,
            "STELLAR_BCRYPT_COST": "10",
            "STELLAR_RATE_LIMITS": UNLIMITED,
            **environment,
        }
    )
    return Panel(await aiohttp_server(create_app(settings, background_jobs=False)), aiohttp_client)


async def refused(response: ClientResponse, status: int, code: str) -> dict[str, Any]:
    body: dict[str, Any] = await response.json()
    assert response.status == status, body
    assert body["error"]["code"] == code, body
    return body


async def test_postgres_down_is_503_with_retry_after_and_the_replica_recovers_by_itself(
    aiohttp_server: AiohttpServer, aiohttp_client: AiohttpClient
) -> None:
    with private_postgres() as postgres:
        await migrated(postgres.url)
        panel = await make_panel(aiohttp_server, aiohttp_client, STELLAR_DATABASE_URL=postgres.url)
        admin = await panel.signed_in("admin@example.org", admin=True)
        key = await admin.json(
            "POST", "/api/v1/account/api-keys", status=201, json={"name": "bot", "scopes": ["read"]}
        )
        bot = await panel.browser()
        bot.api_key = key["key"]
        await bot.json("GET", "/api/v1/servers")
        anonymous = await panel.browser()

        postgres.stop()
        with capture_logs() as logs:
            for client, method, path, body in (
                (admin, "GET", "/api/v1/servers", None),
                (admin, "POST", "/api/v1/locations", {"code": "eu"}),
                (bot, "GET", "/api/v1/servers", None),
                (anonymous, "POST", "/api/v1/auth/login", {"email": "a@b.org", "password": "x"}),
            ):  # fmt: skip
                response = await client.request(method, path, json=body)
                await refused(response, 503, "database_unavailable")
                assert response.headers["Retry-After"] == "5", path
        assert any(entry["event"] == "database fault" for entry in logs)
        assert not [entry for entry in logs if entry.get("exc_info")]
        # Liveness stays green (restarting would not help); readiness says what is missing.
        assert (await anonymous.request("GET", "/healthz")).status == 200
        ready = await anonymous.request("GET", "/readyz")
        assert ready.status == 503
        assert await ready.json() == {
            "status": "unavailable", "database": "unavailable", "redis": "not configured",
            "node_streams": "off",  # no background jobs in this app
        }  # fmt: skip

        postgres.start()
        # The same process, the same session and key: back without a restart.
        await admin.json("GET", "/api/v1/servers")
        await bot.json("GET", "/api/v1/servers")
        assert (await anonymous.request("GET", "/readyz")).status == 200
        # Nothing was remembered from before the outage: a key revoked now is refused now.
        await admin.json("DELETE", f"/api/v1/account/api-keys/{key['id']}", status=204)
        await refused(await bot.request("GET", "/api/v1/servers"), 401, "unauthenticated")


async def test_redis_down_keeps_limits_per_replica_and_shares_them_again_when_it_is_back(
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
    database_url: str,
    engine: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(rate_limit, "REDIS_RETRY_SECONDS", 0.5)
    with private_redis() as redis:
        panel = await make_panel(
            aiohttp_server,
            aiohttp_client,
            STELLAR_DATABASE_URL=database_url,
            REDIS_URL=redis.url,
            STELLAR_RATE_LIMITS="api=5/60",
        )
        visitor = await panel.browser()
        gauge = panel.server.app[METRICS].registry

        async def statuses(count: int) -> list[int]:
            return [
                (await visitor.request("GET", "/api/v1/blueprints")).status for _ in range(count)
            ]

        assert await statuses(6) == [401] * 5 + [429]  # shared buckets in Redis
        redis.stop()
        with capture_logs() as logs:
            # This replica's own buckets: enforced, never a 500.
            assert await statuses(6) == [401] * 5 + [429]
        warnings = [e for e in logs if e["log_level"] == "warning"]
        assert [e["event"] for e in warnings] == [
            "rate limits: Redis unavailable; using this replica's own buckets until it is back"
        ]
        assert gauge.get_sample_value("stellar_rate_limit_redis_unavailable") == 1
        ready = await (await visitor.request("GET", "/readyz")).json()
        assert ready == {
            "status": "ready", "database": "ok", "redis": "unavailable", "node_streams": "off"
        }  # fmt: skip

        redis.start()  # empty: the shared buckets start full again
        await _eventually_shared(visitor)
        assert gauge.get_sample_value("stellar_rate_limit_redis_unavailable") == 0
        ready = await (await visitor.request("GET", "/readyz")).json()
        assert ready["redis"] == "ok"


async def _eventually_shared(visitor: Browser) -> None:
    import asyncio

    for _ in range(50):
        await asyncio.sleep(0.2)
        if (await visitor.request("GET", "/api/v1/blueprints")).status == 401:
            ready = await (await visitor.request("GET", "/readyz")).json()
            if ready["redis"] == "ok":
                return
    pytest.fail("the rate limits never went back to Redis")


@contextlib.contextmanager
def small_filesystem(megabytes: int) -> Iterator[Path]:
    if os.geteuid() != 0:
        service_missing("a small filesystem for SQLite needs root (mount -t tmpfs)")
    where = Path(tempfile.mkdtemp(prefix="stellar-full-"))
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", str(where)], check=True
    )
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)
        where.rmdir()


def fill(where: Path) -> Path:
    """Fill the filesystem to the last byte; the filler, to remove."""
    filler = where / "filler"
    with filler.open("wb", buffering=0) as out:
        for size in (65536, 1):
            with contextlib.suppress(OSError):
                while True:
                    out.write(b"\0" * size)
    return filler


@pytest.fixture
def full_disk() -> Iterator[Path]:
    with small_filesystem(16) as where:
        yield where


async def test_sqlite_on_a_full_disk_is_507_loses_nothing_and_writes_again_once_freed(
    aiohttp_server: AiohttpServer, aiohttp_client: AiohttpClient, full_disk: Path
) -> None:
    database = full_disk / "stellar.db"
    url = f"sqlite:///{database}"
    await migrated(url)
    panel = await make_panel(aiohttp_server, aiohttp_client, STELLAR_DATABASE_URL=url)
    admin = await panel.signed_in("admin@example.org", admin=True)
    await admin.json("POST", "/api/v1/locations", status=201, json={"code": "before"})
    filler = fill(full_disk)

    with capture_logs() as logs:
        # The WAL may still have room for a few pages: write until the disk says no.
        answers = []
        for n in range(200):
            body = {"code": f"after{n}", "description": "x" * 250}
            response = await admin.request("POST", "/api/v1/locations", json=body)
            answers.append(response.status)
            if response.status != 201:
                await refused(response, 507, "insufficient_storage")
                break
        assert answers[-1] == 507, answers
        anonymous = await panel.browser()
        login = await anonymous.request(
            "POST", "/api/v1/auth/login", json={"email": "admin@example.org", "password": "x" * 12}
        )
        assert login.status in (401, 507)  # a failed sign-in writes only its audit row
    faults = [e for e in logs if e["event"] == "database fault"]
    assert faults
    assert all(e["database"] == str(database) for e in faults)
    # Reads go on while the disk is full.
    listed = await admin.json("GET", "/api/v1/locations?per_page=500")
    codes = [loc["code"] for loc in listed["data"]]
    assert codes[0] == "before"
    assert len(codes) == len(answers)  # every 201 kept, the refused one not half written

    filler.unlink()
    await admin.json("POST", "/api/v1/locations", status=201, json={"code": "freed"})
    with sqlite3.connect(database) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
