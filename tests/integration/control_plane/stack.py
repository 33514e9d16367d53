"""The whole system for end-to-end tests: the real control plane, a real agent, real Docker.

:func:`running_stack` builds it as an administrator would (location, node, the agent started
with the node's id and trusting the control plane's key, a blueprint) and tears it down;
the ``stack`` fixture in ``conftest.py`` hands it to a test. :class:`Stack` creates servers
and finds a server's volume on the agent's disk, where a test plants what a game could.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pytest_aiohttp import AiohttpClient, AiohttpServer
from sqlalchemy import update

from control_plane.app import create_app
from control_plane.db.engine import session_factory
from control_plane.db.models import Allocation
from control_plane.db.session import transaction
from control_plane.keys import ENGINE
from control_plane.settings import load_settings
from node_agent.storage.directory import VOLUMES_DIR
from shared.command_keys import key_id, public_key_text, write_private_key
from tests.support.agent_process import AgentProcess, free_port
from tests.support.panel import Browser, Panel


@dataclass
class Stack:
    panel: Panel
    admin: Browser
    agent: AgentProcess
    node_id: str
    blueprint_id: str
    servers: list[str] = field(default_factory=list)

    async def add_ports(self, count: int) -> list[int]:
        ports = [free_port() for _ in range(count)]
        for port in ports:
            await self.admin.json(
                "POST",
                f"/api/v1/nodes/{self.node_id}/allocations",
                status=201,
                json={"ip": "127.0.0.1", "port": port},
            )
        return ports

    def server_body(self, owner_id: str, name: str = "survival") -> dict[str, Any]:
        return {
            "name": name,
            "owner_id": owner_id,
            "blueprint_id": self.blueprint_id,
            "node_id": self.node_id,
            "memory_mib": 512,
            "cpu_percent": 100,
            "disk_mib": 1024,
            "pids_limit": 64,
        }

    async def owned_server(self, email: str) -> tuple[str, Browser]:
        """A new server on the node, and its owner signed in."""
        await self.add_ports(1)
        owner_id = await self.panel.create_user(email)
        created = await self.admin.json(
            "POST", "/api/v1/servers", status=201, json=self.server_body(owner_id)
        )
        self.servers.append(created["id"])
        owner = await self.panel.browser()
        await owner.login(email)
        return created["id"], owner

    async def give_port(self, server_id: str, port: int) -> None:
        """One more of the node's free ports (127.0.0.1) to the server, as an administrator
        does when making it (Pterodactyl's ``allocation.additional``)."""
        async with transaction(session_factory(self.panel.server.app[ENGINE])) as db:
            given = await db.execute(
                update(Allocation)
                .where(Allocation.port == port, Allocation.ip == "127.0.0.1")
                .where(Allocation.server_id.is_(None))
                .values(server_id=uuid.UUID(server_id))
            )
            assert given.rowcount == 1  # type: ignore[attr-defined]

    def volume(self, server_id: str) -> Path:
        """The server's volume on the agent's disk (the directory backend)."""
        return self.agent.data_dir / VOLUMES_DIR / server_id


@asynccontextmanager
async def running_stack(
    *,
    environment: Mapping[str, str],
    database_url: str,
    tmp_path: Path,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
    agent_settings: Mapping[str, Any] | None = None,
) -> AsyncIterator[Stack]:
    """A control plane on ``database_url`` commanding one agent process; both stopped after.

    ``environment``: the control plane's settings besides the database and the keys;
    ``agent_settings``: the agent's, over the test defaults.
    """
    key_file = tmp_path / "signing.key"
    private = Ed25519PrivateKey.generate()
    write_private_key(key_file, private)
    settings = load_settings(
        {
            **environment,
            "STELLAR_DATABASE_URL": database_url,
            "STELLAR_SIGNING_KEY_FILE": str(key_file),
            "STELLAR_ENCRYPTION_KEYS": "k1:" + "5e" * 8 + "a1b2c3d4e5f60718" * 3,
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
    agent.settings["sftp_port"] = free_port()
    # Failed SFTP logins reach the audit trail once a window: a short one for the tests.
    agent.settings["sftp"] = {"failure_report_seconds": 1}
    agent.settings.update(agent_settings or {})
    agent.start()
    try:
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
    finally:
        agent.stop()


async def wait_for_state(browser: Browser, server_id: str, state: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        seen = (await browser.json("GET", f"/api/v1/servers/{server_id}"))["state"]
        if seen == state:
            return
        await asyncio.sleep(0.2)
    pytest.fail(f"server {server_id} stayed {seen!r}, never {state!r}")


async def wait_for_backup(browser: Browser, path: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        backup: dict[str, Any] = await browser.json("GET", path)
        if backup["status"] != "running":
            return backup
        await asyncio.sleep(0.3)
    pytest.fail(f"{path} still running after {timeout} s")


async def read_until(
    socket: aiohttp.ClientWebSocketResponse, text: str, timeout: float = 20
) -> None:
    async with asyncio.timeout(timeout):
        async for message in socket:
            if message.type != aiohttp.WSMsgType.TEXT:
                pytest.fail(f"socket ended with {message.type} before {text!r}")
            frame = json.loads(message.data)
            if frame.get("event") == "console output" and text in str(frame.get("args")):
                return
    pytest.fail(f"{text!r} never appeared")


async def next_error(socket: aiohttp.ClientWebSocketResponse) -> str:
    """The next error event, skipping output and status frames."""
    async with asyncio.timeout(10):
        while True:
            frame = await socket.receive_json()
            if frame["event"] == "error":
                return str(frame["args"][0])
