"""Events a node sent while no replica followed it are applied once, late, and none twice.

A follower stops (its replica restarted, or died and another takes the node over): the
crashes, SFTP logins and the like that the node reports meanwhile used to be lost — their
audit rows, webhooks and alerts never came. The agent keeps them numbered; each is applied
in the transaction that records it as the node's ``events_cursor``, and the next follower
resumes after it. Against the real agent application (its command-token verifier, event
bus and stream route; Docker simulated as in the fleet bench) and the control plane's own
follower, client and database, on both databases.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from pytest_aiohttp import AiohttpServer
from sqlalchemy import func, select

from bench.fleet_nodes import StreamLog, simulated_node_app
from control_plane.db.models import AuditEntry, Node, Server
from control_plane.db.session import transaction
from control_plane.keys import SESSIONS
from control_plane.nodes.events import LeaseLost, NodeEventListener, StreamGap, StreamPosition
from node_agent.keys import NODE_EVENTS
from node_agent.settings import AgentSettings
from shared.command_keys import key_id, load_private_key, public_key_text
from shared.node_api import CrashEvent, DiskFullEvent, SftpLoginEvent
from tests.integration.control_plane.test_node_event_flood import (
    AnyLease,
    node_moved_to,
    state_of,
)
from tests.support.agent_process import free_port
from tests.support.world import World


async def audited(world: World, action: str) -> int:
    async with transaction(world.panel.server.app[SESSIONS]) as db:
        found = await db.scalar(
            select(func.count()).select_from(AuditEntry).where(AuditEntry.action == action)
        )
        return int(found or 0)


async def cursor_of(world: World) -> str | None:
    async with transaction(world.panel.server.app[SESSIONS]) as db:
        node = await db.get(Node, uuid.UUID(world.ids["node"]))
        assert node is not None
        return node.events_cursor


async def test_events_sent_while_no_replica_followed_are_applied_once(
    signing_world: World, tmp_path: Path, aiohttp_server: AiohttpServer
) -> None:
    world = signing_world
    app = world.panel.server.app
    public = load_private_key(tmp_path / "signing.key").public_key()
    port = free_port()
    streams = StreamLog()
    agent = simulated_node_app(
        AgentSettings(
            node_id=uuid.UUID(world.ids["node"]),
            issuer="stellar-cp",
            listen_port=port,
            data_dir=tmp_path / "agent",
            trusted_keys={key_id(public): public_key_text(public)},
            storage_backend="directory",
            facts_refresh_seconds=3600,
        ),
        streams,
    )
    await aiohttp_server(agent, port=port)
    await node_moved_to(world, port)
    bus = agent[NODE_EVENTS]
    server = uuid.UUID(world.ids["alice_server"])

    def crash() -> CrashEvent:
        return CrashEvent(
            server=server, exit_code=1, oom_killed=False, restarting=False, reason="segfault"
        )

    def failed_login() -> SftpLoginEvent:
        return SftpLoginEvent(
            server=server, user=uuid.uuid4(), success=False, method="password", address="x"
        )

    following: asyncio.Task[None] | None = None
    listener = NodeEventListener(app)

    async def follow() -> None:
        """A follower starts (as after a replica's restart or a takeover)."""
        nonlocal following
        opened = streams.open
        node_id = uuid.UUID(world.ids["node"])
        following = asyncio.create_task(listener._listen(node_id, AnyLease()))  # type: ignore[arg-type]
        async with asyncio.timeout(30):
            while streams.open == opened:
                assert not following.done(), following.result()
                await asyncio.sleep(0.02)

    async def stop() -> None:
        assert following is not None
        following.cancel()
        await asyncio.gather(following, return_exceptions=True)
        async with asyncio.timeout(10):
            while streams.open:
                await asyncio.sleep(0.02)

    async def counts_reach(crashed: int, logins: int, full: int = 0) -> None:
        async with asyncio.timeout(30):
            while (
                await audited(world, "server.crashed"),
                await audited(world, "server.sftp.login_failed"),
                await audited(world, "server.disk.full"),
            ) != (crashed, logins, full):
                assert following is None or not following.done(), following.result()
                await asyncio.sleep(0.05)

    try:
        # A node no follower recorded yet is followed from now on (an older control plane
        # may have applied what it sent before); where is recorded at once.
        bus.publish(crash())
        await follow()
        async with asyncio.timeout(10):
            while await cursor_of(world) is None:
                await asyncio.sleep(0.02)
        assert await cursor_of(world) == f"{bus.epoch}:1"
        bus.publish(crash())  # live: audited and applied
        await counts_reach(crashed=1, logins=0)
        assert await state_of(world, str(server)) == "crashed"
        assert await cursor_of(world) == f"{bus.epoch}:2"

        # The replica goes; a crash and a failed SFTP login meanwhile; another takes over.
        await stop()
        async with transaction(app[SESSIONS]) as db:
            row = await db.get(Server, server)
            assert row is not None
            row.state = "running"  # as the game is now
        bus.publish(failed_login())
        bus.publish(crash())
        await follow()
        await counts_reach(crashed=2, logins=1)
        # The replayed crash is audited, not applied: the state is the one of now.
        assert await state_of(world, str(server)) == "running"

        # And once more, with nothing new: nothing applied twice (a live event after the
        # replay shows the replay is over).
        await stop()
        await follow()
        bus.publish(DiskFullEvent(server=server, used_bytes=10, limit_bytes=10))
        await counts_reach(crashed=2, logins=1, full=1)
        assert await cursor_of(world) == f"{bus.epoch}:5"

        # A follower that falls behind: the agent's queue for it overflows, it is told, and
        # the stream opened again replays what was lost — each once.
        bus._queue_events = 2
        await stop()
        await follow()
        for _ in range(10):
            bus.publish(crash())  # at once: the follower's queue takes 2
        assert following is not None
        async with asyncio.timeout(30):
            while not following.done():
                await asyncio.sleep(0.02)
        assert isinstance(following.exception(), StreamGap)
        await follow()  # as the follower's loop does, after its backoff
        await counts_reach(crashed=12, logins=1, full=1)
        assert await cursor_of(world) == f"{bus.epoch}:15"

        # A follower frozen past its lease wakes up mid-event: the cursor moved on under it,
        # so it applies nothing and stops (it would set the cursor back, and the next
        # follower would apply the events after it twice).
        stale = StreamPosition.resuming(f"{bus.epoch}:5")
        async with transaction(app[SESSIONS]) as db:
            node_row = await db.get(Node, uuid.UUID(world.ids["node"]))
            assert node_row is not None
            with pytest.raises(LeaseLost):
                await listener._advance(db, node_row, stale, 6)
        assert await cursor_of(world) == f"{bus.epoch}:15"
    finally:
        if following is not None:
            following.cancel()
            await asyncio.gather(following, return_exceptions=True)


def test_a_node_cannot_number_its_events_past_what_the_cursor_keeps() -> None:
    """The stream's frames come from the node: a start frame that is not one of an agent's
    (an epoch of any length, a negative or huge number) is ignored, and so is a number out
    of range (the event is applied unnumbered, the cursor not moved)."""
    position = StreamPosition.resuming(None)
    assert position.cursor is None
    for frame in (
        {"type": "stream", "epoch": "x" * 64, "seq": 1},
        {"type": "stream", "epoch": "0123456789abcdef", "seq": -1},
        {"type": "stream", "epoch": "0123456789abcdef", "seq": 10**30},
        {"type": "stream", "epoch": "0123456789abcdef"},
    ):
        position.started(frame)
        assert position.epoch is None, frame
    position.started({"type": "stream", "epoch": "0123456789abcdef", "seq": 7})
    assert (position.epoch, position.start) == ("0123456789abcdef", 7)
    for seq in (0, -3, 10**18, True, "5", 2.0):
        assert position.number({"type": "crash", "seq": seq}) is None, seq
    assert position.number({"type": "crash", "seq": 10**18 - 1}) == 10**18 - 1
    assert len(f"{position.epoch}:{10**18 - 1}") <= 40  # nodes.events_cursor
    resumed = StreamPosition.resuming("0123456789abcdef:12")
    assert (resumed.epoch, resumed.applied) == ("0123456789abcdef", 12)
    assert StreamPosition.resuming("garbage").epoch is None
