"""A whole system for tests: the real control plane, a real agent process, real Docker.

The ``stack`` fixture (tests/integration/control_plane/conftest.py) builds one per test on
each database: an administrator, a location, a node served by a real agent and a blueprint
of the locally built fake game.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest

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


async def wait_for_state(browser: Browser, server_id: str, state: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        seen = (await browser.json("GET", f"/api/v1/servers/{server_id}"))["state"]
        if seen == state:
            return
        await asyncio.sleep(0.2)
    pytest.fail(f"server {server_id} stayed {seen!r}, never {state!r}")


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
