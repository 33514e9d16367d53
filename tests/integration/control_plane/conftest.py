"""The real control-plane app on a migrated database of each kind (SQLite and PostgreSQL);
and the whole system (``stack``: control plane, a real agent process, real Docker)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pytest_aiohttp import AiohttpClient, AiohttpServer
from sqlalchemy.ext.asyncio import AsyncEngine

from control_plane.app import create_app
from control_plane.settings import ControlPlaneSettings, load_settings
from shared.command_keys import key_id, public_key_text, write_private_key
from tests.integration.node_agent.live_agent import require_docker_and_images
from tests.support.agent_process import AgentProcess
from tests.support.live_stack import Stack
from tests.support.panel import Panel

AUTH_SECRET = "k3Jd9QmX2vLp7RtN4wYb8ZcF6hGs1aEu0iOy5TnM"
UNLIMITED = ",".join(
    f"{name}=1000000/60" for name in ("authentication", "sensitive", "api", "power", "files")
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


@pytest.fixture(scope="module")
def docker_images() -> Iterator[None]:
    yield from require_docker_and_images()


@pytest.fixture
async def stack(
    docker_images: None,
    engine: AsyncEngine,
    database_url: str,
    tmp_path: Path,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
) -> AsyncIterator[Stack]:
    key_file = tmp_path / "signing.key"
    private = Ed25519PrivateKey.generate()
    write_private_key(key_file, private)
    settings = load_settings(
        {
            "STELLAR_DATABASE_URL": database_url,
            "STELLAR_AUTH_SECRET": AUTH_SECRET,
            "STELLAR_BCRYPT_COST": "10",
            "STELLAR_RATE_LIMITS": UNLIMITED,
            "STELLAR_SIGNING_KEY_FILE": str(key_file),
            "STELLAR_NODE_HEALTH_INTERVAL_SECONDS": "2",
            "STELLAR_ENCRYPTION_KEYS": "k1:" + "5e" * 8 + "a1b2c3d4e5f60718" * 3,
            "STELLAR_BACKUP_LIMIT": "2",
        }
    )
    panel = Panel(await aiohttp_server(create_app(settings)), aiohttp_client)
    admin = await panel.signed_in("admin@example.org", admin=True)
    location = await admin.json("POST", "/api/v1/locations", status=201, json={"code": "lab"})
    node = await admin.json(
        "POST",
        "/api/v1/nodes",
        status=201,
        json={"name": "node-1", "url": "http://127.0.0.1:9", "location_id": location["id"]},
    )
    assert f'"{key_id(private.public_key())}"' in node["agent_config"]
    agent = AgentProcess(
        tmp_path / "agent",
        {key_id(private.public_key()): public_key_text(private.public_key())},
        node_id=uuid.UUID(node["id"]),
    )
    agent.start()
    await admin.json("PATCH", f"/api/v1/nodes/{node['id']}", json={"url": agent.base_url})
    blueprint = await admin.json(
        "POST",
        "/api/v1/blueprints",
        status=201,
        json={
            "name": "fake game",
            "images": [{"name": "default", "image": "stellar-test/fake-game:latest"}],
            "startup": "/usr/local/bin/fake-game",
            "stop": {"type": "command", "value": "stop"},
        },
    )
    stack = Stack(panel, admin, agent, node["id"], blueprint["id"])
    try:
        yield stack
    finally:
        for server_id in stack.servers:
            await admin.request("DELETE", f"/api/v1/servers/{server_id}")
        agent.stop()
