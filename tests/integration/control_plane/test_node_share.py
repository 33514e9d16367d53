"""Replicas share the nodes: each follows ceil(nodes / live replicas).

A replica that starts when the others already follow every node (after a rolling restart,
or one added for load) used to get none: the first replica up kept them all. Now one holding
more than its share lets the extra go, the newcomer takes them up, and never do two
replicas follow one node at once; when a replica stops, the others take its nodes back.
A replica that reaches the database but not the nodes steps aside (not counted, no
node-health poll, not ready) until it can reach them; nodes that are down do not set one
aside. Two control planes (apps with their own engines and lease sessions) on one PostgreSQL
database, six nodes running the real agent application (Docker simulated, as in the fleet
bench).
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import aiohttp.abc
import pytest
from aiohttp import web
from aiohttp.abc import ResolveResult
from aiohttp.test_utils import TestServer
from pytest_aiohttp import AiohttpServer

import control_plane.app
from bench.fleet_nodes import StreamLog, simulated_node_app
from control_plane.app import create_app
from control_plane.db.models import Node
from control_plane.db.session import transaction
from control_plane.keys import LEASES, METRICS, SESSIONS, SETTINGS
from control_plane.nodes.transport import refuse_redirects
from control_plane.settings import ControlPlaneSettings
from node_agent.settings import AgentSettings
from shared.command_keys import key_id, load_private_key, public_key_text
from tests.integration.control_plane.test_node_event_flood import node_moved_to
from tests.support.agent_process import free_port
from tests.support.world import World

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
NODES = 6


async def until(what: str, check: Callable[[], bool], streams: list[StreamLog]) -> None:
    """Wait for ``check``; no node ever has two followers meanwhile."""
    async with asyncio.timeout(40):
        while not check():
            assert all(log.open <= 1 for log in streams), f"two followers at once ({what})"
            await asyncio.sleep(0.05)


@dataclass
class Fleet:
    """The nodes (real agent applications, Docker simulated) and the replicas' settings."""

    streams: list[StreamLog]
    settings: ControlPlaneSettings
    node_ids: list[uuid.UUID]
    setup: web.Application  # the world's control plane: no background jobs

    def all_followed(self) -> bool:
        return all(log.open == 1 for log in self.streams)


async def fleet_of_nodes(
    world: World, tmp_path: Path, aiohttp_server: AiohttpServer, *, host: str = "127.0.0.1"
) -> Fleet:
    """``NODES`` nodes (the world's and more), registered at ``http://{host}:{port}``."""
    setup = world.panel.server.app  # no background jobs: it follows no node
    public = load_private_key(tmp_path / "signing.key").public_key()
    streams: list[StreamLog] = []
    node_ids = [uuid.UUID(world.ids["node"])]
    async with transaction(setup[SESSIONS]) as db:
        for number in range(1, NODES):
            node = Node(name=f"share-{number}", url="http://127.0.0.1:1", memory_mib=0, disk_mib=0)
            db.add(node)
            await db.flush()
            node_ids.append(node.id)
    for number, node_id in enumerate(node_ids):
        port = free_port()
        log = StreamLog()
        agent = simulated_node_app(
            AgentSettings(
                node_id=node_id,
                issuer="stellar-cp",
                listen_port=port,
                data_dir=tmp_path / f"agent-{number}",
                trusted_keys={key_id(public): public_key_text(public)},
                storage_backend="directory",
                facts_refresh_seconds=3600,
            ),
            log,
        )
        await aiohttp_server(agent, port=port)
        streams.append(log)
        if number == 0:
            await node_moved_to(world, port)
        async with transaction(setup[SESSIONS]) as db:
            row = await db.get(Node, node_id)
            assert row is not None
            row.url = f"http://{host}:{port}"
    # Each replica its own app, engine, pools, lease session and background jobs (the event
    # listener among them), on the same database.
    # (The world's settings: the same database and signing key.)
    return Fleet(streams, setup[SETTINGS], node_ids, setup)


def aside(replica: TestServer) -> bool:
    """Whether ``replica`` stands aside, unable to reach the nodes the others follow."""
    (family,) = replica.app[METRICS].node_events_aside.collect()
    return family.samples[0].value == 1


def following(replica: TestServer) -> int:
    """The nodes whose stream ``replica`` holds open (its own metrics say)."""
    (family,) = replica.app[METRICS].event_stream_connected.collect()
    return sum(1 for sample in family.samples if sample.value == 1)


async def test_a_replica_that_joins_gets_its_share_and_a_stopped_ones_nodes_are_taken_back(
    signing_world: World,
    tmp_path: Path,
    aiohttp_server: AiohttpServer,
) -> None:
    fleet = await fleet_of_nodes(signing_world, tmp_path, aiohttp_server)
    streams, settings, all_followed = fleet.streams, fleet.settings, fleet.all_followed

    first = await aiohttp_server(create_app(settings))
    await until("alone", lambda: all_followed() and following(first) == NODES, streams)

    # The second joins: the first lets half go (it holds 6, its share is 3), the second takes
    # them up.
    second = await aiohttp_server(create_app(settings))
    await until(
        "sharing",
        lambda: all_followed() and following(first) == following(second) == NODES // 2,
        streams,
    )
    let_go = [log for log in streams if len(log.closed) == 1]
    assert len(let_go) == NODES // 2, "only the nodes let go changed followers"

    # The second stops (its lease session ends with it): the first takes every node back.
    await second.close()
    await until("taken back", lambda: all_followed() and following(first) == NODES, streams)


class Partition(aiohttp.abc.AbstractResolver):
    """A replica's view of the nodes' name (``localhost``): while cut, it cannot be resolved
    (as on a host whose network or DNS does not reach the nodes); the calls fail to connect."""

    def __init__(self) -> None:
        self.cut = True
        self._system = aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if self.cut:
            raise OSError(f"{host}: no route from this replica (test partition)")
        return await self._system.resolve(host, port, socket.AF_INET)

    async def close(self) -> None:
        await self._system.close()


async def test_a_replica_that_cannot_reach_the_nodes_steps_aside_and_comes_back_when_it_can(
    signing_world: World,
    tmp_path: Path,
    aiohttp_server: AiohttpServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A replica behind a firewall that lets only the others reach the nodes: it still reaches
    PostgreSQL, so it was counted in the shares, and the others stopped at their share and one
    while it failed to follow its own (two of six nodes unfollowed here for as long as it
    lasted); and, holding the node-health poll, it would mark every node offline. It now
    steps aside, is not counted and gives the poll up while the nodes the others follow do
    not answer it, and is counted again once one does."""
    fleet = await fleet_of_nodes(signing_world, tmp_path, aiohttp_server, host="localhost")
    partition = Partition()

    def cut_off_session() -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(resolver=partition)
        return aiohttp.ClientSession(connector=connector, middlewares=(refuse_redirects,))

    with monkeypatch.context() as patch:
        patch.setattr(control_plane.app, "node_session", cut_off_session)
        cut_off = await aiohttp_server(create_app(fleet.settings))
    # Alone, it cannot tell its network from the nodes: it goes on trying, and polls.
    await until("polling", lambda: cut_off.app[LEASES].held("node-health") == 1, fleet.streams)
    assert not aside(cut_off)

    other = await aiohttp_server(create_app(fleet.settings))
    await until(
        "aside",
        lambda: (
            aside(cut_off)
            and fleet.all_followed()
            and following(other) == NODES
            and cut_off.app[LEASES].held("node-health") == 0
            and other.app[LEASES].held("node-health") == 1
        ),
        fleet.streams,
    )
    for _ in range(20):  # and so it stays (five claim rounds and more)
        await asyncio.sleep(0.5)
        assert fleet.all_followed()
        assert following(other) == NODES
        assert aside(cut_off)
        assert cut_off.app[LEASES].held("node-health") == 0
    # Its load balancer's health check sends requests to the other meanwhile.
    assert await readiness(cut_off) == (503, "aside")
    assert await readiness(other) == (200, "ok")

    # The network heals: a node answers its probe; it is counted and gets its share.
    partition.cut = False
    await until(
        "sharing",
        lambda: fleet.all_followed() and following(cut_off) == following(other) == NODES // 2,
        fleet.streams,
    )
    assert not aside(cut_off)
    assert await readiness(cut_off) == (200, "ok")


async def readiness(replica: TestServer) -> tuple[int, str]:
    """``/readyz``'s status and what it says of the node streams."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(replica.make_url("/readyz")) as response,
    ):
        return response.status, (await response.json())["node_streams"]


async def test_nodes_that_are_down_do_not_set_a_replica_that_reaches_the_others_aside(
    signing_world: World,
    tmp_path: Path,
    aiohttp_server: AiohttpServer,
) -> None:
    """Two of the six nodes down: the nodes left free are those two, and a replica that gets
    only them fails to connect to both. It asks a node the other replica follows, which
    answers: it stays counted (were it set aside, the first's share would grow to all six
    and the two would trade nodes back and forth)."""
    fleet = await fleet_of_nodes(signing_world, tmp_path, aiohttp_server)
    async with transaction(fleet.setup[SESSIONS]) as db:
        for node_id in fleet.node_ids[-2:]:  # nothing listens there: connections refused
            row = await db.get(Node, node_id)
            assert row is not None
            row.url = f"http://127.0.0.1:{free_port()}"
    up = fleet.streams[:-2]
    first = await aiohttp_server(create_app(fleet.settings))
    await until("the four up", lambda: following(first) == 4, fleet.streams)
    # Its share and one: it keeps the four. The second gets the two that are down.
    second = await aiohttp_server(create_app(fleet.settings))
    for _ in range(30):  # seven claim rounds and more
        await asyncio.sleep(0.5)
        assert not aside(second)
        assert not aside(first)
    assert all(log.open == 1 for log in up)
