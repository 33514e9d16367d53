"""A replica that was frozen past its run's lease does not go on with that run.

Replica A runs a schedule whose second task waits out a delay; A is frozen (SIGSTOP, a long
GC pause, a VM migration: no tick renews its lease) until the lease has expired. Replica B
marks the run failed, as it must, and runs the schedule's next occurrence. When A wakes up,
the run is no longer its own: the tasks left must not be done a second time beside B's run
(a second restart, a second backup). Two schedulers on one app and one database stand for the
two replicas; the scheduler's clock is in the test's hand.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from pytest_aiohttp import AiohttpClient, AiohttpServer
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from control_plane.app import create_app
from control_plane.db.models import ScheduleRun, Server
from control_plane.db.session import transaction
from control_plane.keys import SCHEDULER, SESSIONS
from control_plane.scheduling.clock import ManualClock
from control_plane.scheduling.runner import Scheduler
from control_plane.services.schedules.store import LEASE_EXPIRED
from shared.node_endpoints import SERVER_COMMAND
from tests.integration.control_plane.conftest import signing_settings
from tests.support.panel import Panel
from tests.support.world import build_world


@dataclass
class Console:
    """A node that takes console commands and remembers them (their tokens are not its
    concern here)."""

    lines: list[str] = field(default_factory=list)

    def app(self) -> web.Application:
        async def command(request: web.Request) -> web.Response:
            self.lines.append(json.loads(await request.read())["command"])
            return web.Response(status=204)

        app = web.Application()
        app.router.add_post(SERVER_COMMAND.path, command)
        return app


async def test_a_replica_frozen_past_its_runs_lease_does_not_go_on_with_the_run(
    engine: AsyncEngine,
    database_url: str,
    tmp_path: Path,
    schedule_clock: ManualClock,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
) -> None:
    clock = schedule_clock
    settings = signing_settings(database_url, tmp_path)
    served = await aiohttp_server(
        create_app(settings, background_jobs=False, scheduler_clock=clock)
    )
    world = await build_world(Panel(served, aiohttp_client))
    app = world.panel.server.app
    console = Console()
    node = await aiohttp_server(console.app())
    await world.admin.json(
        "PATCH", f"/api/v1/nodes/{world.ids['node']}", json={"url": f"http://127.0.0.1:{node.port}"}
    )
    lease = app[SCHEDULER].lease.total_seconds()
    first = {"action": "command", "command": "say one"}
    second = {"action": "command", "command": "say two", "delay_seconds": int(lease * 2)}
    made = await world.alice.json(
        "POST",
        f"/api/v1/servers/{world.ids['alice_server']}/schedules",
        status=201,
        json={"name": "f", "cron": "*/5 * * * *", "tasks": [first, second]},
    )
    async with transaction(app[SESSIONS]) as db:
        await db.execute(
            update(Server)
            .where(Server.id == uuid.UUID(world.ids["alice_server"]))
            .values(state="running")
        )
    replica_a = app[SCHEDULER]
    replica_b = Scheduler(app, clock)

    await clock.advance(5 * 60)
    [run_a] = await replica_a.tick()
    async with asyncio.timeout(30):
        await clock.sleeping()  # A did the first task and waits out the second's delay
    assert console.lines == ["say one"]

    # A is frozen: it does not tick. The lease runs out; B finds the run dead.
    await clock.advance(lease + 1)
    assert await replica_b.tick() == []
    async with transaction(app[SESSIONS]) as db:
        dead = await db.get(ScheduleRun, run_a.run_id)
        assert dead is not None
        assert (dead.status, dead.reason) == ("failed", LEASE_EXPIRED)

    # The next occurrence is B's; A wakes up once its delay has passed.
    await clock.set(dt.datetime(2026, 3, 28, 12, 10, tzinfo=dt.UTC))
    [run_b] = await replica_b.tick()
    async with asyncio.timeout(30):
        while console.lines.count("say one") < 2:
            await asyncio.sleep(0.01)
        await clock.sleeping()  # B waits out the delay in its turn
    # Both awake now: their ticks renew the leases of what they run while B's delay passes.
    for _ in range(int(lease * 2 / 10)):
        await clock.advance(10)
        await replica_a.tick()
        await replica_b.tick()
    async with asyncio.timeout(30):
        await asyncio.gather(replica_a.drain(), replica_b.drain())

    # B's run did both tasks; A's run, no longer A's, did nothing more.
    assert console.lines == ["say one", "say one", "say two"], console.lines
    async with transaction(app[SESSIONS]) as db:
        runs = {
            run.id: run
            for run in await db.scalars(
                select(ScheduleRun).where(ScheduleRun.schedule_id == uuid.UUID(made["id"]))
            )
        }
    assert (runs[run_a.run_id].status, runs[run_a.run_id].reason) == ("failed", LEASE_EXPIRED)
    assert [o["position"] for o in runs[run_a.run_id].outcomes] == [0]
    assert runs[run_b.run_id].status == "completed"
