"""A run whose control plane is killed mid-way is marked failed, and the schedule goes on.

A real ``python -m control_plane serve`` process claims the run and is killed with SIGKILL
while a task waits; the app under test (its scheduler's clock in hand) then finds the lease
expired, records the run failed and runs the next occurrence.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select, update

from control_plane.db.engine import session_factory
from control_plane.db.models import Schedule, ScheduleRun
from control_plane.db.session import transaction
from control_plane.keys import ENGINE, SCHEDULER
from control_plane.scheduling.clock import ManualClock
from control_plane.services.schedules.store import LEASE_EXPIRED
from shared.command_keys import write_private_key
from tests.integration.control_plane.conftest import AUTH_SECRET
from tests.support.agent_process import free_port
from tests.support.world import World

REPO = Path(__file__).resolve().parents[3]
LEASE_SECONDS = 10


@pytest.fixture
def control_plane_process(database_url: str, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Another control plane on the same database, ticking every half second."""
    key = tmp_path / "signing.key"
    write_private_key(key, Ed25519PrivateKey.generate())
    env = {k: v for k, v in os.environ.items() if not k.startswith("STELLAR_")}
    env.update(
        {
            "STELLAR_DATABASE_URL": database_url,
            "STELLAR_AUTH_SECRET": AUTH_SECRET,
            "STELLAR_SIGNING_KEY_FILE": str(key),
            "STELLAR_PORT": str(free_port()),
            "STELLAR_SCHEDULE_TICK_SECONDS": "0.5",
            "STELLAR_SCHEDULE_LEASE_SECONDS": str(LEASE_SECONDS),
            "PYTHONPATH": str(REPO) + os.pathsep + env.get("PYTHONPATH", ""),
        }
    )
    with (tmp_path / "control-plane.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "control_plane", "serve"],
            env=env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


async def _runs(world: World, schedule_id: uuid.UUID) -> list[ScheduleRun]:
    async with transaction(session_factory(world.panel.server.app[ENGINE])) as db:
        return list(
            await db.scalars(
                select(ScheduleRun)
                .where(ScheduleRun.schedule_id == schedule_id)
                .order_by(ScheduleRun.started_at)
            )
        )


async def test_a_run_killed_with_its_control_plane_is_marked_failed_and_the_next_run_happens(
    scheduled_world: World,
    schedule_clock: ManualClock,
    control_plane_process: subprocess.Popen[bytes],
    tmp_path: Path,
) -> None:
    world, clock = scheduled_world, schedule_clock
    path = f"/api/v1/servers/{world.ids['alice_server']}/schedules"
    first = {"action": "command", "command": "say one", "continue_on_failure": True}
    slow = {"action": "command", "command": "say two", "delay_seconds": 900}
    made = await world.alice.json(
        "POST", path, status=201, json={"name": "c", "cron": "* * * * *", "tasks": [first, slow]}
    )
    schedule_id = uuid.UUID(made["id"])
    factory = session_factory(world.panel.server.app[ENGINE])
    # Due now in real time: the process (on the real clock) claims it at its next tick.
    async with transaction(factory) as db:
        await db.execute(
            update(Schedule)
            .where(Schedule.id == schedule_id)
            .values(next_run_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
        )
    deadline = time.monotonic() + 60
    while True:
        runs = await _runs(world, schedule_id)
        if runs and runs[0].status == "running" and len(runs[0].outcomes) == 1:
            break  # the first task done, the second waiting its 900 s
        log = (tmp_path / "control-plane.log").read_text(errors="replace")[-3000:]
        assert control_plane_process.poll() is None, log
        assert time.monotonic() < deadline, f"the process never got mid-way: {runs}\n{log}"
        await asyncio.sleep(0.2)
    killed = runs[0]
    control_plane_process.send_signal(signal.SIGKILL)
    control_plane_process.wait(timeout=10)

    scheduler = world.panel.server.app[SCHEDULER]
    # Still within its lease: nobody may take the run for dead yet.
    await clock.set(dt.datetime.now(dt.UTC))
    await scheduler.tick()
    assert (await _runs(world, schedule_id))[0].status == "running"
    assert killed.lease_expires_at is not None
    await clock.set(killed.lease_expires_at + dt.timedelta(seconds=LEASE_SECONDS + 1))
    await scheduler.tick()
    dead = (await _runs(world, schedule_id))[0]
    assert (dead.status, dead.reason) == ("failed", LEASE_EXPIRED)
    assert [o["position"] for o in dead.outcomes] == [0]

    # The schedule goes on: its next occurrence runs here, to the end.
    async with transaction(factory) as db:
        schedule = await db.get(Schedule, schedule_id)
        assert schedule is not None
        assert schedule.next_run_at is not None
        due = schedule.next_run_at
    await clock.set(max(due, clock.now()))
    await scheduler.tick()
    async with asyncio.timeout(30):
        await clock.sleeping()  # the first task done, the second waiting its delay
    for _ in range(30):  # this replica renews its run's lease while it waits
        await clock.advance(30)
        await scheduler.renew()
    await scheduler.drain()
    later = [r for r in await _runs(world, schedule_id) if r.id != dead.id]
    # One run went to its end (both commands met the world's dead node); an occurrence
    # that came while it waited its delay was skipped, not run twice.
    ran = [r for r in later if r.status != "skipped"]
    assert [r.status for r in ran] == ["failed"]
    assert [o["position"] for o in ran[0].outcomes] == [0, 1]
    assert ran[0].holder == scheduler.holder
    assert all(r.reason == "the last run is still going" for r in later if r not in ran)
