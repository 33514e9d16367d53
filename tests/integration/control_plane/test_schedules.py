"""Schedules through the real app on both databases, with the scheduler's clock in hand.

The world's node answers nothing (connection refused), so a task that reaches the node call
fails with the node's 503: that tells "authorised and attempted" apart from a refusal.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from typing import Any

import pytest
from sqlalchemy import select, update

from control_plane.db.engine import session_factory
from control_plane.db.models import Schedule, ScheduleRun, Server
from control_plane.db.session import transaction
from control_plane.keys import ENGINE, SCHEDULER
from control_plane.scheduling.clock import ManualClock
from tests.integration.control_plane.test_permission_matrix import set_permissions
from tests.support.panel import Browser
from tests.support.world import World


@pytest.fixture
def clock(schedule_clock: ManualClock) -> ManualClock:
    return schedule_clock


@pytest.fixture
def world(scheduled_world: World) -> World:
    return scheduled_world


def base(world: World) -> str:
    return f"/api/v1/servers/{world.ids['alice_server']}/schedules"


async def tick(world: World) -> None:
    scheduler = world.panel.server.app[SCHEDULER]
    await scheduler.tick()
    await scheduler.drain()


async def runs(browser: Browser, path: str) -> list[dict[str, Any]]:
    body = await browser.json("GET", path + "/runs")
    return list(body["data"])


async def set_state(world: World, state: str) -> None:
    async with transaction(session_factory(world.panel.server.app[ENGINE])) as db:
        await db.execute(
            update(Server)
            .where(Server.id == uuid.UUID(world.ids["alice_server"]))
            .values(state=state)
        )


COMMAND = {"action": "command", "command": "say hello"}


async def test_schedule_crud_shows_the_next_run_in_the_owners_zone(world: World) -> None:
    await world.alice.json("PATCH", "/api/v1/account/settings", json={"timezone": "Europe/Berlin"})
    made = await world.alice.json(
        "POST",
        base(world),
        status=201,
        json={"name": "nightly", "cron": "30 2 * * *", "tasks": [COMMAND]},
    )
    assert made["timezone"] == "Europe/Berlin"
    # 28 March 2026, noon UTC: the next 02:30 in Berlin is on the spring-forward night,
    # which has no 02:30: it runs at 03:30 summer time (01:30 UTC).
    assert made["next_run_at"] == "2026-03-29T01:30:00Z"
    assert [t["command"] for t in made["tasks"]] == ["say hello"]
    one = f"{base(world)}/{made['id']}"
    await world.alice.json("POST", one + "/tasks", status=201, json={
        "task": {"action": "power", "power": "restart", "delay_seconds": 900}, "position": 0
    })  # fmt: skip
    tasks = (await world.alice.json("GET", one + "/tasks"))["data"]
    assert [(t["position"], t["action"]) for t in tasks] == [(0, "power"), (1, "command")]
    await world.alice.json("PATCH", one, json={"cron": "0 6 * * 1", "active": False})
    assert (await world.alice.json("GET", one))["next_run_at"] is None
    # A new zone for the owner moves the next run of every active schedule on their servers.
    await world.alice.json("PATCH", one, json={"active": True})
    await world.alice.json("PATCH", "/api/v1/account/settings", json={"timezone": "UTC"})
    assert (await world.alice.json("GET", one))["next_run_at"] == "2026-03-30T06:00:00Z"
    await world.alice.json("DELETE", one + f"/tasks/{tasks[0]['id']}", status=204)
    assert [t["position"] for t in (await world.alice.json("GET", one))["tasks"]] == [0]
    await world.alice.json("DELETE", one, status=204)
    await world.alice.json("GET", one, status=404)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "cron": "61 * * * * "}, "cron"),
        ({"name": "x", "cron": "* * * * * *"}, "cron"),
        ({"name": "x", "cron": "0 0 30 2 *"}, "cron"),
        ({"name": "x", "cron": "* * * * *", "tasks": [COMMAND] * 11}, "tasks"),
        ({"name": "x", "cron": "* * * * *", "tasks": [{**COMMAND, "delay_seconds": 901}]}, "tasks"),
        ({"name": "x", "cron": "* * * * *", "tasks": [{**COMMAND, "command": "a\x1bb"}]}, "tasks"),
        ({"name": "x", "cron": "* * * * *", "tasks": [{"action": "power", "power": "x"}]}, "tasks"),
        ({"name": "x", "cron": "* * * * *", "tasks": [{"action": "rm -rf"}]}, "tasks"),
        ({"name": "x", "cron": "1 * * * *", "tasks": [{"action": "delete_backups"}]}, "tasks"),
    ],
)  # fmt: skip
async def test_bad_schedules_are_refused_with_the_field_named(
    world: World, body: dict[str, Any], field: str
) -> None:
    answer = await world.alice.json("POST", base(world), status=400, json=body)
    assert field in str(answer["error"]["details"])


async def test_an_unknown_time_zone_is_refused(world: World) -> None:
    answer = await world.alice.json(
        "PATCH", "/api/v1/account/settings", status=400, json={"timezone": "Mars/Olympus"}
    )
    assert "unknown time zone" in str(answer)
    assert (await world.alice.json("GET", "/api/v1/account/settings"))["timezone"] == "UTC"


async def test_the_injected_clock_decides_when_a_schedule_runs(
    world: World, clock: ManualClock
) -> None:
    made = await world.alice.json(
        "POST", base(world), status=201, json={"name": "m", "cron": "5 12 * * *", "tasks": []}
    )
    one = f"{base(world)}/{made['id']}"
    await tick(world)
    assert await runs(world.alice, one) == []  # 12:00:10: not due yet
    await clock.set(dt.datetime(2026, 3, 28, 12, 5, tzinfo=dt.UTC))
    await tick(world)
    await tick(world)  # the same minute again: nothing more
    [run] = await runs(world.alice, one)
    assert (run["trigger"], run["status"]) == ("cron", "completed")
    assert run["scheduled_for"] == "2026-03-28T12:05:00Z"
    assert (await world.alice.json("GET", one))["next_run_at"] == "2026-03-29T12:05:00Z"


async def test_only_when_online_skips_an_offline_server(world: World, clock: ManualClock) -> None:
    made = await world.alice.json(
        "POST",
        base(world),
        status=201,
        json={"name": "o", "cron": "* * * * *", "only_when_online": True, "tasks": [COMMAND]},
    )
    one = f"{base(world)}/{made['id']}"
    await clock.advance(60)
    await tick(world)
    [skipped] = await runs(world.alice, one)
    assert skipped["status"] == "skipped"
    assert "not running" in skipped["reason"]
    assert skipped["outcomes"] == []  # nothing was sent
    await set_state(world, "running")
    await clock.advance(60)
    await tick(world)
    ran = (await runs(world.alice, one))[0]
    # Online: the command was attempted (the world's node answers nothing).
    assert ran["status"] == "failed"
    assert ran["outcomes"][0]["status"] == "failed"
    assert "permission" not in ran["outcomes"][0]["reason"]


async def test_a_sub_user_who_loses_a_permission_stops_their_schedule_acting(
    world: World, clock: ManualClock
) -> None:
    await set_permissions(world, ["schedules.*", "control.restart", "console.write"])
    # carol may not schedule what she may not do herself.
    kill = {"action": "power", "power": "kill"}
    refused = await world.carol.json(
        "POST", base(world), status=403, json={"name": "k", "cron": "* * * * *", "tasks": [kill]}
    )
    assert "control.kill" in refused["error"]["message"]
    restart = {"action": "power", "power": "restart", "continue_on_failure": True}
    made = await world.carol.json(
        "POST",
        base(world),
        status=201,
        json={"name": "r", "cron": "* * * * *", "tasks": [restart, COMMAND]},
    )
    assert made["runs_as"] == world.ids["carol_user"]
    one = f"{base(world)}/{made['id']}"
    await world.carol.json("POST", one + "/run", status=202)
    await world.panel.server.app[SCHEDULER].drain()
    [first] = await runs(world.carol, one)
    # Allowed: both tasks reached the (dead) node.
    assert [o["status"] for o in first["outcomes"]] == ["failed", "failed"]
    assert all("may no longer" not in o["reason"] for o in first["outcomes"])

    await set_permissions(world, ["schedules.*", "console.write"])
    await clock.advance(60)
    await tick(world)
    latest = (await runs(world.alice, one))[0]
    assert latest["status"] == "failed"
    assert "control.restart" in latest["outcomes"][0]["reason"]
    # continue_on_failure: the command still went (and met the dead node).
    assert "may no longer" not in latest["outcomes"][1]["reason"]

    await set_permissions(world, ["schedules.read", "control.restart", "console.write"])
    await clock.advance(60)
    await tick(world)
    latest = (await runs(world.alice, one))[0]
    assert "schedules.update" in latest["outcomes"][0]["reason"]


async def test_alices_schedules_are_invisible_to_bob(world: World) -> None:
    one = f"{base(world)}/{world.ids['alice_schedule']}"
    await world.bob.json("GET", one, status=404)
    bob_base = f"/api/v1/servers/{world.ids['bob_server']}/schedules"
    # Alice's schedule id under bob's own server is not found either.
    await world.bob.json("GET", f"{bob_base}/{world.ids['alice_schedule']}", status=404)
    await world.bob.json("POST", f"{bob_base}/{world.ids['alice_schedule']}/run", status=404)


async def test_a_run_whose_lease_expired_is_marked_failed_and_the_schedule_goes_on(
    world: World, clock: ManualClock
) -> None:
    made = await world.alice.json(
        "POST", base(world), status=201, json={"name": "l", "cron": "* * * * *", "tasks": []}
    )
    factory = session_factory(world.panel.server.app[ENGINE])
    # A run another replica started and then died holding.
    async with transaction(factory) as db:
        db.add(
            ScheduleRun(
                schedule_id=uuid.UUID(made["id"]),
                trigger="cron",
                status="running",
                started_at=clock.now(),
                holder="dead-replica",
                lease_expires_at=clock.now() + dt.timedelta(seconds=100),
                outcomes=[],
            )
        )
    await clock.advance(50)  # due, but the dead run's lease is still valid: skipped
    await tick(world)
    one = f"{base(world)}/{made['id']}"
    assert [r["status"] for r in await runs(world.alice, one)] == ["skipped", "running"]
    await clock.advance(60)
    await tick(world)
    statuses = [(r["status"], r["reason"]) for r in await runs(world.alice, one)]
    assert statuses[0] == ("completed", None)
    assert statuses[2][0] == "failed"
    assert "lease expired" in str(statuses[2][1])
    async with transaction(factory) as db:
        schedule = await db.scalar(select(Schedule).where(Schedule.id == uuid.UUID(made["id"])))
        assert schedule is not None
        assert schedule.next_run_at == dt.datetime(2026, 3, 28, 12, 3, tzinfo=dt.UTC)


async def test_runs_waiting_out_delays_leave_room_for_others(
    world: World, clock: ManualClock
) -> None:
    """More runs than slots (8) each wait 15 minutes before their task: every one of them
    gets to its delay, and all finish once the time has passed."""
    slow = {**COMMAND, "delay_seconds": 900}
    made = [
        await world.alice.json(
            "POST",
            base(world),
            status=201,
            json={"name": f"d{i}", "cron": "* * * * *", "tasks": [slow]},
        )
        for i in range(12)
    ]
    await clock.advance(60)
    scheduler = world.panel.server.app[SCHEDULER]
    await scheduler.tick()
    async with asyncio.timeout(30):
        await clock.sleeping(12)
    for _ in range(30):  # the replica renews its runs' leases while they wait
        await clock.advance(30)
        await scheduler.renew()
    await scheduler.drain()
    for schedule in made:
        [run] = await runs(world.alice, f"{base(world)}/{schedule['id']}")
        assert run["outcomes"][0]["status"] == "failed"  # the world's dead node
