"""A node that floods its event stream with audited events adds a bounded number of rows.

Crashes, SFTP logins, backups and full disks from a node's stream are audited, and the trail
is kept for months. A rooted node sending them in a loop must not grow the control plane's
database without bound (every tenant on every node shares it): past the node's audit budget
its events still apply — a state change is never lost — and one row says how many were not
audited. Fed through a real WebSocket from a node that sends as fast as it can.
"""

from __future__ import annotations

import asyncio
import uuid

from aiohttp import web
from pytest_aiohttp import AiohttpServer
from sqlalchemy import func, select

from control_plane.db.models import AuditEntry, Node, Server
from control_plane.db.session import transaction
from control_plane.keys import METRICS, SESSIONS
from control_plane.nodes.events import AuditBudget, NodeEventListener
from tests.support.clocks import MonotonicClock
from tests.support.world import World

FLOOD = 400
BUDGET = AuditBudget(burst=20, per_second=0.5)


class AnyLease:
    """The listener's lease on the node, held for the whole test."""

    def valid(self) -> bool:
        return True


class FloodingNode:
    """Sends ``FLOOD`` failed SFTP logins for one server, then a crash; more on ``again``."""

    def __init__(self, server: str) -> None:
        self.server = server
        self.again = asyncio.Event()

    def login(self, n: int) -> dict[str, object]:
        return {
            "type": "sftp_login",
            "server": self.server,
            "user": str(uuid.uuid4()),
            "success": False,
            "method": "password",
            "address": f"192.0.2.{n % 250}",
        }

    def app(self) -> web.Application:
        async def events(request: web.Request) -> web.StreamResponse:
            socket = web.WebSocketResponse()
            await socket.prepare(request)
            for n in range(FLOOD):
                await socket.send_json(self.login(n))
            crash = {"exit_code": 1, "oom_killed": False, "restarting": False, "reason": "x"}
            await socket.send_json({"type": "crash", "server": self.server, **crash})
            await self.again.wait()
            await socket.send_json(self.login(FLOOD))
            await socket.receive()  # until the listener goes
            return socket

        async def nothing(request: web.Request) -> web.Response:
            return web.Response(status=500)  # the read after connecting: nothing to say

        app = web.Application()
        app.router.add_get("/api/v1/events", events)
        app.router.add_route("*", "/{tail:.*}", nothing)
        return app


async def count(world: World, action: str) -> int:
    async with transaction(world.panel.server.app[SESSIONS]) as db:
        found = await db.scalar(
            select(func.count()).select_from(AuditEntry).where(AuditEntry.action == action)
        )
        return int(found or 0)


async def not_audited(world: World) -> list[int]:
    async with transaction(world.panel.server.app[SESSIONS]) as db:
        rows = await db.scalars(
            select(AuditEntry)
            .where(AuditEntry.action == "node.events.not_audited")
            .order_by(AuditEntry.id)
        )
        return [int(row.details["events"]) for row in rows]


async def state_of(world: World, server_id: str) -> str:
    async with transaction(world.panel.server.app[SESSIONS]) as db:
        server = await db.get(Server, uuid.UUID(server_id))
        assert server is not None
        return server.state


async def node_moved_to(world: World, port: int | None) -> Node:
    """The world's node, moved to a node application listening on ``port``."""
    assert port is not None
    await world.admin.json(
        "PATCH", f"/api/v1/nodes/{world.ids['node']}", json={"url": f"http://127.0.0.1:{port}"}
    )
    async with transaction(world.panel.server.app[SESSIONS]) as db:
        row = await db.get(Node, uuid.UUID(world.ids["node"]))
    assert row is not None
    return row


async def test_a_flooding_node_adds_its_budget_of_audit_rows_and_its_events_still_apply(
    signing_world: World, aiohttp_server: AiohttpServer
) -> None:
    world = signing_world
    app = world.panel.server.app
    server = world.ids["alice_server"]
    node = FloodingNode(server)
    row = await node_moved_to(world, (await aiohttp_server(node.app())).port)
    clock = MonotonicClock()
    listener = NodeEventListener(app, audit_budget=BUDGET, clock=clock)
    listening = asyncio.create_task(listener._listen(row.id, AnyLease()))  # type: ignore[arg-type]
    try:
        async with asyncio.timeout(120):
            while await state_of(world, server) != "crashed":
                assert not listening.done(), listening.result()
                await asyncio.sleep(0.1)
        # The crash came after the flood and was applied; the budget's rows, no more.
        assert await count(world, "server.sftp.login_failed") == 20
        assert await count(world, "server.crashed") == 0
        # Said at once, then counted: FLOOD - 20 logins and the crash went unaudited.
        assert await not_audited(world) == [1]
        metric = app[METRICS].node_events_not_audited.labels(row.name)._value.get()
        assert metric == FLOOD - 20 + 1

        clock.advance(2)  # one more row's worth of budget: the count comes first, then the row
        node.again.set()
        async with asyncio.timeout(60):
            while await count(world, "server.sftp.login_failed") < 21:
                await asyncio.sleep(0.1)
        assert await not_audited(world) == [1, FLOOD - 20]
    finally:
        listening.cancel()
        await asyncio.gather(listening, return_exceptions=True)
