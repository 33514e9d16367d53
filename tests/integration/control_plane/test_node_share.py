"""Replicas share the nodes: each follows ceil(nodes / live replicas).

A replica that starts when the others already follow every node (after a rolling restart,
or one added for load) used to get none: the first replica up kept them all. Now one holding
more than its share lets the extra go, the newcomer takes them up, and never do two
replicas follow one node at once; when a replica stops, the others take its nodes back.
Two control planes (apps with their own engines and lease sessions) on one PostgreSQL
database, six nodes running the real agent application (Docker simulated, as in the fleet
bench).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from pytest_aiohttp import AiohttpClient, AiohttpServer
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.fleet_nodes import StreamLog, simulated_node_app
from control_plane.app import create_app
from control_plane.db.models import Node
from control_plane.db.session import transaction
from control_plane.keys import METRICS, SESSIONS
from node_agent.settings import AgentSettings
from shared.command_keys import key_id, load_private_key, public_key_text
from tests.integration.control_plane.test_node_event_flood import (
    node_moved_to,
    signing_settings,
    signing_world,
)
from tests.support.agent_process import free_port

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
NODES = 6


async def until(what: str, check: Callable[[], bool], streams: list[StreamLog]) -> None:
    """Wait for ``check``; no node ever has two followers meanwhile."""
    async with asyncio.timeout(40):
        while not check():
            assert all(log.open <= 1 for log in streams), f"two followers at once ({what})"
            await asyncio.sleep(0.05)


async def test_a_replica_that_joins_gets_its_share_and_a_stopped_ones_nodes_are_taken_back(
    engine: AsyncEngine,
    database_url: str,
    tmp_path: Path,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
) -> None:
    world = await signing_world(database_url, tmp_path, aiohttp_server, aiohttp_client)
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
        else:
            async with transaction(setup[SESSIONS]) as db:
                row = await db.get(Node, node_id)
                assert row is not None
                row.url = f"http://127.0.0.1:{port}"

    # Two replicas: each its own app, engine, pools, lease session and background jobs (the
    # event listener among them), on the same database.
    settings = signing_settings(database_url, tmp_path / "signing.key")

    def following(replica: TestServer) -> int:
        """The nodes whose stream ``replica`` holds open (its own metrics say)."""
        (family,) = replica.app[METRICS].event_stream_connected.collect()
        return sum(1 for sample in family.samples if sample.value == 1)

    def all_followed() -> bool:
        return all(log.open == 1 for log in streams)

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
