"""A frozen node (SIGSTOP: its sockets open, nothing answered) costs a client a bounded wait
and a clear 503 on every kind of call — a plain call, a streamed download, a WebSocket
handshake — and everything works again once it thaws, without a restart."""

from __future__ import annotations

import time

import aiohttp
import pytest

from tests.integration.control_plane.conftest import AUTH_SECRET, UNLIMITED
from tests.integration.control_plane.stack import Stack, wait_for_state

pytestmark = pytest.mark.docker
NODE_TIMEOUT = 3


@pytest.fixture
def stack_environment() -> dict[str, str]:
    return {
        "STELLAR_AUTH_SECRET": AUTH_SECRET,
        "STELLAR_BCRYPT_COST": "10",
        "STELLAR_RATE_LIMITS": UNLIMITED,
        "STELLAR_NODE_HEALTH_INTERVAL_SECONDS": "2",
        "STELLAR_NODE_TIMEOUT_SECONDS": str(NODE_TIMEOUT),
    }


async def test_every_call_to_a_frozen_node_is_a_503_within_its_timeout(stack: Stack) -> None:
    server_id, owner = await stack.owned_server("owner@example.org")
    base = f"/api/v1/servers/{server_id}"
    (stack.volume(server_id) / "notes.txt").write_text("hello\n")
    await owner.json("GET", f"{base}/files/list?path=/")

    stack.agent.freeze()
    try:
        calls = {
            "power": owner.request("POST", f"{base}/power", json={"action": "start"}),
            "list": owner.request("GET", f"{base}/files/list?path=/"),
            "download": owner.request("GET", f"{base}/files/contents?path=/notes.txt"),
            "console": owner.request(
                "GET",
                f"{base}/console",
                headers={
                    "Connection": "Upgrade",
                    "Upgrade": "websocket",
                    "Sec-WebSocket-Version": "13",
                    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                },
            ),
        }
        for name, call in calls.items():
            started = time.monotonic()
            response = await call
            took = time.monotonic() - started
            body = await response.json()
            assert response.status == 503, (name, body)
            assert body["error"]["code"] == "node_unavailable", (name, body)
            assert "did not answer in time" in body["error"]["message"], (name, body)
            assert took < NODE_TIMEOUT + 3, (name, took)
    finally:
        stack.agent.thaw()

    listing = await owner.json("GET", f"{base}/files/list?path=/")
    assert "notes.txt" in str(listing)
    await owner.json("POST", f"{base}/power", status=202, json={"action": "start"})
    await wait_for_state(owner, server_id, "running")
    async with owner.client.ws_connect(f"{base}/console") as socket:
        message = await socket.receive(timeout=10)
        assert message.type == aiohttp.WSMsgType.TEXT
