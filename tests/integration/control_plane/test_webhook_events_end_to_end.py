"""Webhooks fed by a real agent: a server's power action, its state changes and a finished
backup reach a receiver on loopback, signed, through the node's event stream."""

from __future__ import annotations

import json
import uuid

import pytest
from pytest_aiohttp import AiohttpServer

from control_plane.db.engine import session_factory
from control_plane.db.models import Server
from control_plane.db.session import transaction
from control_plane.keys import ENGINE
from tests.integration.control_plane.conftest import AUTH_SECRET, UNLIMITED
from tests.integration.control_plane.stack import Stack, wait_for_backup, wait_for_state
from tests.support.panel import Browser
from tests.support.webhook_receiver import Receiver, verify_signature

pytestmark = pytest.mark.docker
EVENTS = ["server.state", "server.power", "server.backup.completed", "server.backup.failed"]


async def _following_the_node_now(stack: Stack, server_id: str, owner: Browser) -> None:
    """Return once the panel follows the node's event stream (events sent before that are
    lost, as the listener's docstring says): move the node to another spelling of its URL,
    which makes the listener connect afresh and read every server's state, with a wrong
    state planted that only that read puts right."""
    async with transaction(session_factory(stack.panel.server.app[ENGINE])) as db:
        server = await db.get(Server, uuid.UUID(server_id))
        assert server is not None
        server.state = "stopping"
    url = stack.agent.base_url.replace("127.0.0.1", "localhost")
    await stack.admin.json("PATCH", f"/api/v1/nodes/{stack.node_id}", json={"url": url})
    await wait_for_state(owner, server_id, "offline")


@pytest.fixture
def stack_environment() -> dict[str, str]:
    """The stack's control plane with its system resolver: the receiver is reached as
    ``localhost``, which only the test setting lets resolve into loopback."""
    return {
        "STELLAR_AUTH_SECRET": AUTH_SECRET,
        "STELLAR_BCRYPT_COST": "10",
        "STELLAR_RATE_LIMITS": UNLIMITED,
        "STELLAR_NODE_HEALTH_INTERVAL_SECONDS": "2",
        "STELLAR_WEBHOOK_TEST_ALLOW_NETWORKS": "127.0.0.0/8,::1/128",
        "STELLAR_WEBHOOK_POLL_SECONDS": "0.1",
    }


async def test_power_state_and_backup_events_of_a_real_server_are_delivered(
    stack: Stack, aiohttp_server: AiohttpServer
) -> None:
    receiver = Receiver()
    receiving = await aiohttp_server(receiver.app())
    server_id, owner = await stack.owned_server("keeper@example.org")
    hook = await owner.json(
        "POST",
        f"/api/v1/servers/{server_id}/webhooks",
        status=201,
        json={"name": "ops", "url": f"http://localhost:{receiving.port}/in", "events": EVENTS},
    )
    power = f"/api/v1/servers/{server_id}/power"
    await owner.json("POST", power, status=202, json={"action": "start"})
    await wait_for_state(owner, server_id, "running")
    await owner.json("POST", power, status=202, json={"action": "stop"})
    await wait_for_state(owner, server_id, "offline")
    await _following_the_node_now(stack, server_id, owner)
    backups = f"/api/v1/servers/{server_id}/backups"
    backup = await owner.json("POST", backups, status=202, json={"name": "nightly"})
    assert (await wait_for_backup(owner, f"{backups}/{backup['id']}"))["status"] == "completed"

    def seen() -> set[tuple[str, str]]:
        out = set()
        for arrived in receiver.received:
            body = json.loads(arrived.body)
            data = body["data"]
            out.add((body["type"], data["details"].get("state", data["action"])))
        return out

    want = {
        ("server.power", "server.power.start"),
        ("server.state", "running"),
        ("server.power", "server.power.stop"),
        ("server.state", "offline"),
        ("server.backup.completed", "server.backup.completed"),
    }
    count = 1
    while not want <= seen():
        await receiver.wait_for(count, timeout=30)
        count += 1
    for arrived in receiver.received:
        assert verify_signature(hook["secret"], arrived.headers, arrived.body)
        assert json.loads(arrived.body)["data"]["server"]["id"] == server_id


async def test_a_real_game_that_exits_non_zero_is_delivered_as_crashed_then_restarted(
    stack: Stack, aiohttp_server: AiohttpServer
) -> None:
    """The game in a real container exits with code 1 on its own: ``server.state`` crashed
    (previous running) is delivered, then its restart (starting, previous crashed)."""
    receiver = Receiver()
    receiving = await aiohttp_server(receiver.app())
    server_id, owner = await stack.owned_server("crasher@example.org")
    url = f"http://localhost:{receiving.port}/in"
    body = {"name": "ops", "url": url, "events": ["server.state"]}
    await owner.json("POST", f"/api/v1/servers/{server_id}/webhooks", status=201, json=body)
    await _following_the_node_now(stack, server_id, owner)
    power = f"/api/v1/servers/{server_id}/power"
    await owner.json("POST", power, status=202, json={"action": "start"})
    await wait_for_state(owner, server_id, "running")
    command = f"/api/v1/servers/{server_id}/command"
    await owner.json("POST", command, status=204, json={"command": "crash"})

    def changes() -> list[dict[str, str]]:
        """What arrived, in the order it happened (deliveries may overtake one another)."""
        bodies = sorted(
            (json.loads(arrived.body) for arrived in receiver.received),
            key=lambda body: str(body["timestamp"]),
        )
        return [body["data"]["details"] for body in bodies]

    crashed = {"state": "crashed", "previous": "running"}
    restarted = {"state": "starting", "previous": "crashed"}
    count = 1
    while not (crashed in changes() and restarted in changes()):
        await receiver.wait_for(count, timeout=30)
        count += 1
    got = changes()
    assert got.index(crashed) < got.index(restarted)
    await wait_for_state(owner, server_id, "running")
    await owner.json("POST", power, status=202, json={"action": "stop"})
    await wait_for_state(owner, server_id, "offline")
