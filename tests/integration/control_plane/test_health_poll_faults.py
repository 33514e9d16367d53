"""The node-health poll, a background job under a lease, through a PostgreSQL outage: the
lease is lost without a traceback, no pass runs meanwhile, and the poll goes on by itself once
the database is back, without a restart of the replica."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pytest_aiohttp import AiohttpClient, AiohttpServer
from structlog.testing import capture_logs

from control_plane.app import create_app
from control_plane.settings import load_settings
from shared.command_keys import write_private_key
from tests.integration.control_plane.conftest import AUTH_SECRET, UNLIMITED
from tests.integration.control_plane.test_service_faults import migrated
from tests.support.agent_process import free_port
from tests.support.panel import Browser, Panel
from tests.support.private_services import private_postgres


async def until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.2)
    pytest.fail(f"never: {what}")


async def add_node(admin: Browser, location_id: str, name: str) -> str:
    node = await admin.json(
        "POST",
        "/api/v1/nodes",
        status=201,
        json={"name": name, "url": f"http://127.0.0.1:{free_port()}", "location_id": location_id},
    )
    return str(node["id"])


async def test_the_health_poll_rides_out_a_postgres_outage(
    aiohttp_server: AiohttpServer, aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    key_file = tmp_path / "signing.key"
    write_private_key(key_file, Ed25519PrivateKey.generate())
    with private_postgres() as postgres:
        await migrated(postgres.url)
        settings = load_settings(
            {
                "STELLAR_AUTH_SECRET": AUTH_SECRET,
                "STELLAR_BCRYPT_COST": "10",
                "STELLAR_RATE_LIMITS": UNLIMITED,
                "STELLAR_DATABASE_URL": postgres.url,
                "STELLAR_SIGNING_KEY_FILE": str(key_file),
                "STELLAR_NODE_HEALTH_INTERVAL_SECONDS": "1",
            }
        )
        panel = Panel(await aiohttp_server(create_app(settings)), aiohttp_client)
        admin = await panel.signed_in("admin@example.org", admin=True)
        location = await admin.json("POST", "/api/v1/locations", status=201, json={"code": "lab"})

        async def polled(node_id: str) -> bool:
            node: dict[str, Any] = await admin.json("GET", f"/api/v1/nodes/{node_id}")
            return bool(node["status"] == "offline")  # nobody listens at its address

        first = await add_node(admin, location["id"], "node-1")
        await until(lambda: polled(first), "the first node polled")

        postgres.stop()
        with capture_logs() as logs:
            # Under its lease (control_plane/db/leases.py) the poll stops leading when the
            # database goes: the lease is lost, and no pass runs until it is taken again.

            async def lease_lost() -> bool:
                return any(e["event"] == "leases lost" for e in logs)

            await until(lease_lost, "the poller lost its lease in the outage")
            postgres.start()
            second = await add_node(admin, location["id"], "node-2")
            await until(lambda: polled(second), "the poll went on after the outage")
        noted = [e for e in logs if "health poll" in e["event"] or "lease" in e["event"]]
        assert not [e for e in noted if e.get("exc_info")], noted
