"""Resource history: samples folded into 10 s and 5 min buckets, served per range, merged when
a bucket is written in parts, and trimmed by the retention job, all on the app's wall clock
moved by hand (both databases)."""

from __future__ import annotations

import uuid
from typing import Any

from pytest_aiohttp import AiohttpClient, AiohttpServer
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from control_plane.db.engine import session_factory
from control_plane.db.leases import LeaseKeeper
from control_plane.db.models import Node, ServerStatsBucket
from control_plane.db.session import transaction
from control_plane.keys import METRICS, SESSIONS
from control_plane.nodes.events import NodeEventListener
from control_plane.observability.retention import run_retention
from control_plane.services import resource_history
from control_plane.services.resource_history import HistoryRecorder
from shared.node_api import StatsEvent
from tests.integration.control_plane.mfa_support import mfa_panel
from tests.support.clocks import WallClock
from tests.support.panel import Panel
from tests.support.world import World, build_world

MIB = 1024 * 1024


def sample(server_id: str, n: int, *, at: float) -> StatsEvent:
    """The n-th sample: CPU n %, memory n MiB, 1000 bytes/s in and 500 out (at 2 s steps)."""
    return StatsEvent(
        server=uuid.UUID(server_id),
        sampled_at=at,
        cpu_percent=float(n),
        memory_bytes=n * MIB,
        network_rx_bytes=n * 2000,
        network_tx_bytes=n * 1000,
        disk_used_bytes=n * MIB,
        disk_limit_bytes=1024 * MIB,
    )


async def feed(panel: Panel, clock: WallClock, server_id: str, count: int) -> None:
    """``count`` samples 2 s apart through one recorder, stored as its buckets complete."""
    recorder = HistoryRecorder()
    factory = panel.server.app[SESSIONS]
    for n in range(1, count + 1):
        recorder.add(sample(server_id, n, at=clock()), clock())
        async with transaction(factory) as db:
            await resource_history.write(db, recorder.take_complete(clock()))
        clock.advance(2)
    async with transaction(factory) as db:
        await resource_history.write(db, recorder.take_all())


async def history(world: World, server_id: str, range_name: str) -> dict[str, Any]:
    body: dict[str, Any] = await world.alice.json(
        "GET", f"/api/v1/servers/{server_id}/stats/history?range={range_name}"
    )
    return body


async def rows(engine: AsyncEngine, resolution: int) -> int:
    async with transaction(session_factory(engine)) as db:
        count = await db.scalar(
            select(func.count()).where(ServerStatsBucket.resolution == resolution)
        )
    return int(count or 0)


async def test_samples_are_downsampled_served_and_trimmed(
    database_url: str,
    engine: AsyncEngine,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
    wall_clock: WallClock,
) -> None:
    panel = await mfa_panel(database_url, aiohttp_server, aiohttp_client, wall_clock)
    world = await build_world(panel)
    server_id = world.ids["alice_server"]
    # Start on a 5-minute boundary: 150 samples 2 s apart fill one 5 min bucket and 30 of 10 s.
    wall_clock.now = (wall_clock.now // 300 + 1) * 300
    start = int(wall_clock.now)
    await feed(panel, wall_clock, server_id, 150)

    recent = await history(world, server_id, "15m")
    assert recent["resolution_seconds"] == 10
    points = recent["points"]
    assert [p["at"] for p in points] == [start + 10 * i for i in range(30)]
    first = points[0]
    # Samples 1..5 in the first bucket: the averages and peaks of those.
    assert first["samples"] == 5
    assert first["cpu_percent"] == 3.0
    assert first["cpu_max_percent"] == 5.0
    assert first["memory_bytes"] == 3 * MIB
    assert first["memory_max_bytes"] == 5 * MIB
    # Rates need a sample before: four of the five have one; 2000 bytes per 2 s is 1000/s.
    assert first["network_rx_bytes_per_second"] == 1000.0
    assert first["network_tx_bytes_per_second"] == 500.0
    assert first["disk_used_bytes"] == 5 * MIB
    assert first["disk_limit_bytes"] == 1024 * MIB

    day = await history(world, server_id, "24h")
    assert day["resolution_seconds"] == 300
    assert [(p["at"], p["samples"]) for p in day["points"]] == [(start, 150)]
    assert day["points"][0]["cpu_percent"] == 75.5
    assert day["points"][0]["cpu_max_percent"] == 150.0

    # Past a day the 10 s buckets go; the 5 min ones stay for 30 days.
    wall_clock.advance(86_400 + 600)
    leases = LeaseKeeper(engine)  # (this app runs no background jobs of its own)
    try:
        assert await run_retention(panel.server.app, leases) == 30
        assert (await history(world, server_id, "6h"))["points"] == []
        assert len((await history(world, server_id, "30d"))["points"]) == 1
        wall_clock.advance(30 * 86_400)
        assert await run_retention(panel.server.app, leases) == 1
    finally:
        await leases.close()
    assert await rows(engine, 300) == 0
    registry = panel.server.app[METRICS].registry
    runs = registry.get_sample_value(
        "stellar_background_job_runs_total", {"task": "stats-retention"}
    )
    assert runs == 2


async def test_a_bucket_written_in_two_parts_has_the_averages_of_all_its_samples(
    database_url: str,
    engine: AsyncEngine,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
    wall_clock: WallClock,
) -> None:
    """A replica took the node over mid-bucket: both wrote what they had."""
    panel = await mfa_panel(database_url, aiohttp_server, aiohttp_client, wall_clock)
    world = await build_world(panel)
    server_id = world.ids["alice_server"]
    wall_clock.now = (wall_clock.now // 300 + 1) * 300
    factory = panel.server.app[SESSIONS]
    for cpu_values in ((10.0, 20.0), (60.0,)):
        recorder = HistoryRecorder()
        for cpu in cpu_values:
            event = sample(server_id, 1, at=wall_clock()).model_copy(update={"cpu_percent": cpu})
            recorder.add(event, wall_clock())
            wall_clock.advance(1)
        async with transaction(factory) as db:
            await resource_history.write(db, recorder.take_all())
    point = (await history(world, server_id, "15m"))["points"][0]
    assert (point["samples"], point["cpu_percent"], point["cpu_max_percent"]) == (3, 30.0, 60.0)
    assert await rows(engine, 10) == 1


async def test_an_unknown_range_is_refused_with_the_ranges_there_are(world: World) -> None:
    server_id = world.ids["alice_server"]
    refused = await world.alice.json(
        "GET", f"/api/v1/servers/{server_id}/stats/history?range=1y", status=400
    )
    assert "15m" in str(refused["error"]["details"])


async def test_a_node_cannot_write_history_for_a_server_on_another_node(
    database_url: str,
    engine: AsyncEngine,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
    wall_clock: WallClock,
) -> None:
    """A compromised node sends samples naming another node's server: they are dropped."""
    panel = await mfa_panel(database_url, aiohttp_server, aiohttp_client, wall_clock)
    world = await build_world(panel)
    victim = world.ids["alice_server"]
    async with transaction(session_factory(engine)) as db:
        rogue = Node(name="rogue", url="http://127.0.0.1:9", memory_mib=0, disk_mib=0)
        db.add(rogue)
    async with transaction(session_factory(engine)) as db:
        home = await db.get(Node, uuid.UUID(world.ids["node"]))
        rogue_node = await db.get(Node, rogue.id)
    assert home is not None
    assert rogue_node is not None
    listener = NodeEventListener(panel.server.app)
    for node in (rogue_node, home):
        recorder = HistoryRecorder()
        recorder.add(sample(victim, 7 if node is rogue_node else 1, at=wall_clock()), wall_clock())
        await listener.store(node, recorder.take_all())
    point = (await history(world, victim, "15m"))["points"]
    # Only the home node's sample: the rogue's CPU of 7 % never reached the history.
    assert [(p["samples"], p["cpu_percent"]) for p in point] == [(1, 1.0)]
