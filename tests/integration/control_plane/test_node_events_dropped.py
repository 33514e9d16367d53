"""A node that dropped events for a follower that fell behind: the states are read again.

The agent's stream keeps a bounded queue per subscriber; a follower that falls behind loses
events and is told how many (``{"type": "dropped"}``) once it catches up. The servers whose
state changes were among them would keep a stale state until their next change: after the
notice the follower ends the stream and opens it again (after the backoff a node that says
so in a loop makes longer), which reads every server's state from the node again.
(test_node_events_resume.py: the audit-worthy events lost are replayed then.) Fed through a
real WebSocket from a node application and the control plane's own client.
"""

from __future__ import annotations

import asyncio
import uuid

from aiohttp import web
from pytest_aiohttp import AiohttpServer

from control_plane.keys import METRICS
from control_plane.nodes.events import NodeEventListener, StreamGap
from shared.server_spec import ServerStatus
from tests.integration.control_plane.test_node_event_flood import (
    AnyLease,
    node_moved_to,
    state_of,
)
from tests.support.world import World


class DroppingNode:
    """Reports a state, then (on ``go``) says it dropped events; its servers' states when read
    are ``state`` (what the lost events would have said)."""

    def __init__(self, server: str) -> None:
        self.server = server
        self.state = "offline"
        self.reads = 0
        self.streams = 0
        self.go = asyncio.Event()

    def app(self) -> web.Application:
        async def events(request: web.Request) -> web.StreamResponse:
            socket = web.WebSocketResponse()
            await socket.prepare(request)
            self.streams += 1
            if self.streams == 1:
                await socket.send_json({"type": "state", "server": self.server, "state": "running"})
            await self.go.wait()
            self.go.clear()
            await socket.send_json({"type": "dropped", "count": 7})
            await socket.receive()  # until the follower goes
            return socket

        async def read(request: web.Request) -> web.Response:
            self.reads += 1
            status = ServerStatus(
                uuid=uuid.UUID(request.match_info["server_id"]),
                state=self.state,
                desired_power="stopped",
                install="installed",
                install_exit_code=0,
                stopping=False,
                container=None,
            )
            return web.json_response(text=status.model_dump_json())

        app = web.Application()
        app.router.add_get("/api/v1/events", events)
        app.router.add_get("/api/v1/servers/{server_id}", read)
        return app


async def test_a_node_that_dropped_events_has_its_states_read_again(
    signing_world: World, aiohttp_server: AiohttpServer
) -> None:
    world = signing_world
    app = world.panel.server.app
    server = world.ids["alice_server"]
    node = DroppingNode(server)
    row = await node_moved_to(world, (await aiohttp_server(node.app())).port)
    listener = NodeEventListener(app)

    def listen() -> asyncio.Task[None]:
        return asyncio.create_task(listener._listen(row.id, AnyLease()))  # type: ignore[arg-type]

    listening = listen()

    async def state_becomes(state: str) -> None:
        async with asyncio.timeout(30):
            while await state_of(world, server) != state:
                assert not listening.done() or listening.exception() is not None
                await asyncio.sleep(0.05)

    try:
        await state_becomes("running")  # the connect's read (offline), then the event
        reads = node.reads
        # The game stopped and crashed while the follower was behind: those events were lost.
        node.state = "crashed"
        node.go.set()
        async with asyncio.timeout(30):
            while not listening.done():
                await asyncio.sleep(0.05)
        assert isinstance(listening.exception(), StreamGap)
        assert app[METRICS].node_events_dropped.labels(row.name)._value.get() == 7
        assert await state_of(world, server) == "running"  # not yet: the stream ended
        listening = listen()  # as the follower's loop does, after its backoff
        await state_becomes("crashed")
        assert node.reads > reads
        assert node.streams == 2
    finally:
        listening.cancel()
        await asyncio.gather(listening, return_exceptions=True)
