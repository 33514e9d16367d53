"""A crash a node reports changes the server's state through ``change_state``: the
``server.state`` domain event reaches the subscribers (here: the webhook outbox), and the
crash is still audited.

The node event listener is fed as a node's stream feeds it, without the node's own
``crashed`` state event before the crash (one lost on a reconnect, or an agent that sends
only the crash): the crash alone must publish the change.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from pytest_aiohttp import AiohttpClient, AiohttpServer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from control_plane.db.models import AuditEntry, Node, Server, WebhookDelivery
from control_plane.db.session import transaction
from control_plane.keys import SESSIONS
from control_plane.nodes.events import NodeEventListener
from tests.integration.control_plane.webhook_support import start_panel, webhook_settings
from tests.support.webhook_receiver import Names
from tests.support.world import World, build_world


async def _world(
    database_url: str, aiohttp_server: AiohttpServer, aiohttp_client: AiohttpClient
) -> World:
    # No dispatcher runs: the outbox rows are read, never sent.
    panel = await start_panel(
        webhook_settings(database_url),
        Names({"hooks.example.com": ["93.184.216.34"]}),
        aiohttp_server,
        aiohttp_client,
        background_jobs=False,
    )
    return await build_world(panel)


async def _state_changes(world: World, webhook: str) -> list[dict[str, Any]]:
    """The ``server.state`` deliveries queued for ``webhook``, oldest first."""
    async with transaction(world.panel.server.app[SESSIONS]) as db:
        rows = await db.scalars(
            select(WebhookDelivery)
            .where(WebhookDelivery.webhook_id == uuid.UUID(webhook))
            .where(WebhookDelivery.event_type == "server.state")
            .order_by(WebhookDelivery.created_at)
        )
        return [json.loads(row.body)["data"] for row in rows]


async def test_a_crash_from_the_node_publishes_the_state_change_and_is_audited(
    engine: AsyncEngine,
    database_url: str,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
) -> None:
    world = await _world(database_url, aiohttp_server, aiohttp_client)
    app = world.panel.server.app
    server_id = world.ids["alice_server"]
    hook = world.ids["alice_server_webhook"]
    listener = NodeEventListener(app)
    async with transaction(app[SESSIONS]) as db:
        node = await db.get(Node, uuid.UUID(world.ids["node"]))
    assert node is not None
    await listener._apply(node, {"type": "state", "server": server_id, "state": "running"})
    before = await _state_changes(world, hook)
    assert [c["details"] for c in before] == [{"state": "running", "previous": "offline"}]

    crash = {"type": "crash", "server": server_id, "exit_code": 1, "oom_killed": False}
    await listener._apply(node, {**crash, "restarting": False, "reason": "exit code 1"})

    changes = await _state_changes(world, hook)
    assert len(changes) == 2
    crashed = changes[1]
    assert crashed["action"] == "server.state"
    assert crashed["server"]["id"] == server_id
    assert crashed["details"] == {"state": "crashed", "previous": "running"}

    # A crash it restarts after: the server is starting again, and that is published too.
    await listener._apply(node, {**crash, "restarting": True, "reason": "exit code 1"})
    restarted = (await _state_changes(world, hook))[2:]
    assert [c["details"] for c in restarted] == [{"state": "starting", "previous": "crashed"}]

    async with transaction(app[SESSIONS]) as db:
        server = await db.get(Server, uuid.UUID(server_id))
        assert server is not None
        assert server.state == "starting"
        audited = list(
            await db.scalars(
                select(AuditEntry)
                .where(AuditEntry.action == "server.crashed")
                .where(AuditEntry.target_id == server_id)
            )
        )
    # The audit rows are as before: one per crash, with what the node said.
    assert sorted(entry.details["restarting"] for entry in audited) == [False, True]
    assert {entry.details["exit_code"] for entry in audited} == {1}


async def test_a_crash_of_a_server_already_crashed_publishes_nothing_more(
    engine: AsyncEngine,
    database_url: str,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
) -> None:
    """The node's ``crashed`` state event came first (as a real agent sends it): the crash
    after it is no second change."""
    world = await _world(database_url, aiohttp_server, aiohttp_client)
    app = world.panel.server.app
    server_id = world.ids["alice_server"]
    listener = NodeEventListener(app)
    async with transaction(app[SESSIONS]) as db:
        node = await db.get(Node, uuid.UUID(world.ids["node"]))
    assert node is not None
    for state in ("running", "crashed"):
        await listener._apply(node, {"type": "state", "server": server_id, "state": state})
    await listener._apply(
        node, {"type": "crash", "server": server_id, "exit_code": 1, "restarting": False}
    )
    changes = await _state_changes(world, world.ids["alice_server_webhook"])
    assert [c["details"] for c in changes] == [
        {"state": "running", "previous": "offline"},
        {"state": "crashed", "previous": "running"},
    ]


async def test_a_finished_install_publishes_the_state_it_leaves_the_server_in(
    engine: AsyncEngine,
    database_url: str,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
) -> None:
    world = await _world(database_url, aiohttp_server, aiohttp_client)
    app = world.panel.server.app
    server_id = world.ids["alice_server"]
    listener = NodeEventListener(app)
    async with transaction(app[SESSIONS]) as db:
        node = await db.get(Node, uuid.UUID(world.ids["node"]))
    assert node is not None
    await listener._apply(node, {"type": "state", "server": server_id, "state": "installing"})
    install = {"type": "install", "server": server_id, "success": False, "exit_code": 3}
    await listener._apply(node, {**install, "duration_seconds": 1.0, "last_lines": ["no"]})
    changes = await _state_changes(world, world.ids["alice_server_webhook"])
    assert [c["details"] for c in changes] == [
        {"state": "installing", "previous": "offline"},
        {"state": "install_failed", "previous": "installing"},
    ]
