"""Two control-plane replicas on one PostgreSQL database claim each due run exactly once."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import Counter
from collections.abc import AsyncIterator

import pytest
from pytest_aiohttp import AiohttpClient, AiohttpServer
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from control_plane.app import create_app
from control_plane.db.leases import LeaseKeeper
from control_plane.db.models import ScheduleRun
from control_plane.db.session import transaction
from control_plane.keys import LEASES, SCHEDULER, SESSIONS
from control_plane.scheduling.clock import ManualClock
from control_plane.services.schedules.cron import next_run, zone
from control_plane.settings import ControlPlaneSettings
from tests.conftest import _create_postgres_database, _drop_postgres_database
from tests.support.panel import Panel
from tests.support.world import build_world

START = dt.datetime(2026, 10, 24, 23, 0, 10, tzinfo=dt.UTC)  # the night Berlin falls back
TICKS = 100
EXPRESSIONS = ["* * * * *"] * 12 + ["*/3 * * * *"] * 6 + ["30 2 * * *", "7,8,9 * * * *"]


@pytest.fixture
async def database_url() -> AsyncIterator[str]:
    """PostgreSQL only: row locks are what this test is about (SQLite has one process)."""
    url = await _create_postgres_database()
    try:
        yield url
    finally:
        await _drop_postgres_database(url)


def expected(expression: str, end: dt.datetime) -> int:
    tz, moment, count = zone("Europe/Berlin"), START, 0
    while (moment := next_run(expression, tz, moment)) <= end:
        count += 1
    return count


async def test_two_replicas_run_each_due_schedule_exactly_once_over_100_ticks(
    engine: AsyncEngine,
    settings: ControlPlaneSettings,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
) -> None:
    clock = ManualClock(START)
    replicas = [
        await aiohttp_server(create_app(settings, background_jobs=False, scheduler_clock=clock))
        for _ in range(2)
    ]
    world = await build_world(Panel(replicas[0], aiohttp_client))
    await world.alice.json("PATCH", "/api/v1/account/settings", json={"timezone": "Europe/Berlin"})
    path = f"/api/v1/servers/{world.ids['alice_server']}/schedules"
    ids = [
        (await world.alice.json(
            "POST", path, status=201, json={"name": f"s{i}", "cron": expression, "tasks": []}
        ))["id"]
        for i, expression in enumerate(EXPRESSIONS)
    ]  # fmt: skip
    schedulers = [r.app[SCHEDULER] for r in replicas]
    for scheduler in schedulers:
        scheduler.batch = 3  # small claims, so the replicas' transactions interleave
    claims: list[tuple[str, dt.datetime | None]] = []
    per_replica: Counter[int] = Counter()
    for _ in range(TICKS):
        await clock.advance(60)
        rounds = await asyncio.gather(*(s.tick() for s in schedulers))
        await asyncio.gather(*(s.drain() for s in schedulers))
        for index, claimed in enumerate(rounds):
            per_replica[index] += len(claimed)
            claims.extend((str(c.schedule_id), c.scheduled_for) for c in claimed)

    assert len(claims) == len(set(claims)), "an occurrence was claimed twice"
    got = Counter(schedule for schedule, _ in claims)
    want = {i: expected(e, clock.now()) for i, e in zip(ids, EXPRESSIONS, strict=True)}
    assert dict(got) == {i: n for i, n in want.items() if n}
    assert want[ids[0]] == TICKS
    # The 02:30 Berlin run happened once, though 02:30 came twice that night.
    assert want[ids[-2]] == 1
    async with transaction(replicas[0].app[SESSIONS]) as db:
        not_completed = await db.scalar(
            select(func.count()).select_from(ScheduleRun).where(ScheduleRun.status != "completed")
        )
    assert not_completed == 0
    assert sum(per_replica.values()) == len(claims)


async def test_a_replica_standing_aside_claims_no_run(
    engine: AsyncEngine,
    settings: ControlPlaneSettings,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
) -> None:
    """A replica that cannot reach the nodes the others follow stands aside (not counted:
    control_plane/nodes/events.py); the runs it would claim would fail at their node, so the
    other replica runs them all, and it claims again once counted."""
    clock = ManualClock(START)
    keeper = LeaseKeeper(engine)  # the one replica's leases (no background jobs here)
    apps = [create_app(settings, background_jobs=False, scheduler_clock=clock) for _ in range(2)]
    apps[1][LEASES] = keeper
    replicas = [await aiohttp_server(app) for app in apps]
    world = await build_world(Panel(replicas[0], aiohttp_client))
    path = f"/api/v1/servers/{world.ids['alice_server']}/schedules"
    for i in range(4):
        await world.alice.json(
            "POST", path, status=201, json={"name": f"s{i}", "cron": "* * * * *", "tasks": []}
        )
    counted, aside = (r.app[SCHEDULER] for r in replicas)
    await keeper.count_me(False)
    for _ in range(5):
        await clock.advance(60)
        assert await aside.tick() == []  # first: the runs are there to claim
        assert len(await counted.tick()) == 4
        await counted.drain()
    await keeper.count_me(True)
    await clock.advance(60)
    assert len(await aside.tick()) == 4
    await aside.drain()
    await keeper.close()
