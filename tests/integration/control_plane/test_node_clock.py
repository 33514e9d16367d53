"""A node whose clock is off: a real agent under libfaketime, its wall clock shifted while it
runs. Every call answers a 502 that names the clock and by how much it is off; the node shows
its measured offset (and ``stellar_node_clock_offset_seconds`` has it); once the clock is set
right, calls work again at once and the node is online with a small offset, without a restart
of the agent or the control plane."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from control_plane.keys import METRICS
from tests.conftest import require_tool
from tests.integration.control_plane.conftest import AUTH_SECRET, UNLIMITED
from tests.integration.control_plane.stack import Stack
from tests.support.panel import Browser

pytestmark = pytest.mark.docker
SKEW = 90
UPGRADE = {
    "Connection": "Upgrade",
    "Upgrade": "websocket",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
}


@pytest.fixture
def stack_environment() -> dict[str, str]:
    return {
        "STELLAR_AUTH_SECRET": AUTH_SECRET,
        "STELLAR_BCRYPT_COST": "10",
        "STELLAR_RATE_LIMITS": UNLIMITED,
        "STELLAR_NODE_HEALTH_INTERVAL_SECONDS": "1",
    }


async def node_until(
    admin: Browser, node_id: str, done: Callable[[dict[str, Any]], bool], timeout: float = 15
) -> dict[str, Any]:
    """The node as GET shows it once ``done`` holds (the health poll runs every second)."""
    deadline = time.monotonic() + timeout
    node: dict[str, Any] = {}
    while time.monotonic() < deadline:
        node = await admin.json("GET", f"/api/v1/nodes/{node_id}")
        if done(node):
            return node
        await asyncio.sleep(0.2)
    pytest.fail(f"the node never got there: {node}")


def offset_near(expected: float) -> Callable[[dict[str, Any]], bool]:
    def near(node: dict[str, Any]) -> bool:
        offset = node["clock_offset_seconds"]
        return offset is not None and abs(offset - expected) < 2

    return near


async def test_a_node_clock_off_is_reported_shown_and_recovered(stack: Stack) -> None:
    require_tool("faketime", "faketime")
    agent, admin, node_id = stack.agent, stack.admin, stack.node_id
    # The same agent, its config and data, now under a clock the test can shift.
    agent.stop()
    agent.fake_clock = True
    agent.start()
    server_id, owner = await stack.owned_server("owner@example.org")
    listing = f"/api/v1/servers/{server_id}/files/list?path=/"
    console = f"/api/v1/servers/{server_id}/console"
    await owner.json("GET", listing)
    await node_until(admin, node_id, lambda n: n["status"] == "online" and offset_near(0)(n))

    for shift, how, where in (
        (SKEW, "expired", f"its clock is {SKEW} s ahead of the control plane's"),
        (-SKEW, "not yet valid", f"its clock is {SKEW} s behind the control plane's"),
    ):
        agent.shift_clock(shift)
        calls: tuple[tuple[Browser, str, dict[str, str]], ...] = (
            (admin, f"/api/v1/nodes/{node_id}/system", {}),
            (owner, listing, {}),
            (owner, console, UPGRADE),  # the agent's refused handshake has no body to read
        )
        for browser, path, headers in calls:
            response = await browser.request("GET", path, headers=headers)
            body = await response.json()
            assert response.status == 502, body
            assert body["error"]["code"] == "node_error"
            message = body["error"]["message"]
            assert f"refused our command as {how}" in message, message
            assert where in message, message
            assert "NTP" in message, message
            assert "trust key" not in message, message
        node = await node_until(admin, node_id, offset_near(shift))
        assert node["status"] == "offline"
        listed = await admin.json("GET", "/api/v1/nodes")
        shown = {n["id"]: n["clock_offset_seconds"] for n in listed["data"]}
        assert abs(shown[node_id] - shift) < 2, shown
        registry = stack.panel.server.app[METRICS].registry
        exported = registry.get_sample_value(
            "stellar_node_clock_offset_seconds", {"node": node["name"]}
        )
        assert exported is not None
        assert abs(exported - shift) < 2, exported
    reasons = {e.get("reason") for e in agent.log_events() if e.get("event") == "command rejected"}
    assert {"expired", "not yet valid"} <= reasons, reasons

    # The clock set right, nothing restarted: the very next call works.
    agent.shift_clock(0)
    system = await admin.json("GET", f"/api/v1/nodes/{node_id}/system")
    assert system["node_id"] == node_id
    await owner.json("GET", listing)
    async with owner.client.ws_connect(console) as socket:
        message = await socket.receive(timeout=10)
        assert message.type == aiohttp.WSMsgType.TEXT, message
    node = await node_until(admin, node_id, lambda n: n["status"] == "online" and offset_near(0)(n))
    assert abs(node["clock_offset_seconds"]) < 1, node
