"""Contract of Pterodactyl's schedule routes (``/api/client/servers/{id}/schedules``) over
ours, on both databases: exact status codes, envelope and fields, our rules (permission
nodes, the task's own permission, limits), and attackers refused as on our own routes."""

from __future__ import annotations

import uuid
from typing import Any

from pytest_aiohttp import AiohttpClient, AiohttpServer
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from control_plane.app import create_app
from control_plane.db.engine import session_factory
from control_plane.db.models import AuditEntry, Schedule, Server, Subuser
from control_plane.db.session import transaction
from control_plane.keys import ENGINE
from control_plane.settings import load_settings
from tests.integration.control_plane.conftest import AUTH_SECRET
from tests.support.compat import pterodactyl_key
from tests.support.panel import Browser, Panel
from tests.support.world import World, build_world

NIGHTLY = {
    "name": "nightly",
    "minute": "0",
    "hour": "*/6",
    "day_of_month": "*",
    "month": "*",
    "day_of_week": "1-5",
    "is_active": True,
    "only_when_online": True,
}


def schedules_of(world: World, server: str = "alice_server") -> str:
    return f"/api/client/servers/{world.compat_ids['client'][server]}/schedules"


async def set_carol(world: World, permissions: list[str]) -> None:
    async with transaction(session_factory(world.panel.server.app[ENGINE])) as db:
        await db.execute(
            update(Subuser)
            .where(Subuser.id == uuid.UUID(world.ids["carol_subuser"]))
            .values(permissions=permissions)
        )


async def identifier_of(world: World, key: str) -> str:
    async with transaction(session_factory(world.panel.server.app[ENGINE])) as db:
        server = await db.get(Server, uuid.UUID(world.ids[key]))
        assert server is not None
        return str(server.identifier)


async def test_the_worlds_schedule_in_pterodactyls_shape(world: World) -> None:
    alice = await pterodactyl_key(world.panel, world.alice, "client")
    listed = await alice.json("GET", schedules_of(world))
    assert listed["object"] == "list"
    [schedule] = listed["data"]
    assert schedule["object"] == "server_schedule"
    attributes = schedule["attributes"]
    assert attributes["id"] == int(world.compat_ids["client"]["alice_schedule"])
    assert attributes["name"] == "nightly restart"
    assert attributes["cron"] == {
        "day_of_week": "*",
        "day_of_month": "*",
        "month": "*",
        "hour": "4",
        "minute": "30",
    }
    assert attributes["is_active"] is True
    assert attributes["is_processing"] is False
    assert attributes["only_when_online"] is False
    assert attributes["last_run_at"] is None
    assert attributes["created_at"].endswith("+00:00")
    tasks = attributes["relationships"]["tasks"]
    assert tasks["object"] == "list"
    assert tasks["data"] == [
        {
            "object": "schedule_task",
            "attributes": {
                "id": int(world.compat_ids["client"]["alice_schedule_task"]),
                "sequence_id": 1,
                "action": "command",
                "payload": "say hi",
                "time_offset": 0,
                "is_queued": False,
                "continue_on_failure": False,
                "created_at": attributes["created_at"],
                "updated_at": attributes["created_at"],
            },
        }
    ]
    one = await alice.json("GET", f"{schedules_of(world)}/{attributes['id']}")
    assert one == schedule


async def test_create_update_tasks_run_and_delete(world: World) -> None:
    alice = await pterodactyl_key(world.panel, world.alice, "client")
    made = await alice.json("POST", schedules_of(world), json=NIGHTLY)
    assert made["object"] == "server_schedule"
    number = made["attributes"]["id"]
    assert isinstance(number, int)
    assert made["attributes"]["cron"]["hour"] == "*/6"
    assert made["attributes"]["next_run_at"] is not None
    assert made["attributes"]["relationships"]["tasks"]["data"] == []
    one = f"{schedules_of(world)}/{number}"
    # Ours shows the same schedule: one implementation.
    ours = await world.alice.json("GET", f"/api/v1/servers/{world.ids['alice_server']}/schedules")
    mine = next(s for s in ours["data"] if s["name"] == "nightly")
    assert mine["cron"] == "0 */6 * * 1-5"
    assert mine["active"] is True
    assert mine["only_when_online"] is True
    assert mine["runs_as"] == world.ids["alice_user"]

    # Update takes the whole schedule (Pterodactyl's POST); a missing flag is false.
    changed = await alice.json(
        "POST", one, json={**NIGHTLY, "name": "weekly", "day_of_week": "0"} | {"is_active": False}
    )
    assert changed["attributes"]["name"] == "weekly"
    assert changed["attributes"]["is_active"] is False
    assert changed["attributes"]["next_run_at"] is None
    flags = {k: v for k, v in NIGHTLY.items() if k not in ("is_active", "only_when_online")}
    defaulted = await alice.json("POST", one, json=flags)
    assert defaulted["attributes"]["only_when_online"] is False

    first = await alice.json(
        "POST", f"{one}/tasks", json={"action": "power", "payload": "restart", "time_offset": 5}
    )
    assert first["object"] == "schedule_task"
    assert first["attributes"]["sequence_id"] == 1
    assert first["attributes"]["time_offset"] == 5
    backup = await alice.json(
        "POST",
        f"{one}/tasks",
        json={"action": "backup", "payload": "logs/\n*.tmp", "time_offset": 0, "sequence_id": 1},
    )
    assert backup["attributes"]["sequence_id"] == 1
    assert backup["attributes"]["payload"] == "logs/\n*.tmp"
    shown = await alice.json("GET", one)
    tasks = [t["attributes"] for t in shown["attributes"]["relationships"]["tasks"]["data"]]
    assert [(t["action"], t["sequence_id"]) for t in tasks] == [("backup", 1), ("power", 2)]
    task = f"{one}/tasks/{first['attributes']['id']}"
    moved = await alice.json(
        "POST",
        task,
        json={
            "action": "command",
            "payload": "say bye",
            "time_offset": 10,
            "sequence_id": 1,
            "continue_on_failure": True,
        },
    )
    assert moved["attributes"]["id"] == first["attributes"]["id"]
    assert moved["attributes"]["sequence_id"] == 1
    assert moved["attributes"]["payload"] == "say bye"
    assert moved["attributes"]["continue_on_failure"] is True
    response = await alice.request("DELETE", task)
    assert response.status == 204
    await alice.json("DELETE", task, status=404)

    run = await alice.request("POST", f"{one}/execute")
    assert run.status == 202
    assert await run.json() == []
    response = await alice.request("DELETE", one)
    assert response.status == 204
    gone = await alice.json("GET", one, status=404)
    assert gone["errors"][0]["code"] == "NotFoundHttpException"
    async with transaction(session_factory(world.panel.server.app[ENGINE])) as db:
        actions = list(
            await db.scalars(
                select(AuditEntry.action).where(AuditEntry.action.like("server.schedule.%"))
            )
        )
    for action in ("created", "updated", "run", "deleted"):
        assert f"server.schedule.{action}" in actions


async def test_bad_input_is_refused_as_pterodactyl_does(world: World) -> None:
    alice = await pterodactyl_key(world.panel, world.alice, "client")
    for fields in (
        {"day_of_month": "30", "month": "2", "day_of_week": "*"},  # never matches
        {"minute": "61"},
    ):
        never = await alice.json("POST", schedules_of(world), status=400, json=NIGHTLY | fields)
        assert never["errors"][0]["code"] == "DisplayException"
        assert "cron" in never["errors"][0]["detail"]
    bad: list[tuple[dict[str, Any], str, str]] = [
        ({**NIGHTLY, "name": "x" * 65}, "name", "max"),
        ({**NIGHTLY, "minute": "1 2"}, "minute", "regex"),
        ({k: v for k, v in NIGHTLY.items() if k != "hour"}, "hour", "required"),
        ({**NIGHTLY, "tasks": []}, "tasks", "prohibited"),
    ]
    for body, field, rule in bad:
        refused = await alice.json("POST", schedules_of(world), status=422, json=body)
        assert refused["errors"][0]["meta"] == {"source_field": field, "rule": rule}, body
    tasks = f"{schedules_of(world)}/{world.compat_ids['client']['alice_schedule']}/tasks"
    bad_tasks: list[tuple[dict[str, Any], str, str]] = [
        ({"action": "command", "time_offset": 0}, "payload", "required"),
        ({"action": "power", "payload": "explode", "time_offset": 0}, "payload", "in"),
        ({"action": "command", "payload": "say", "time_offset": 901}, "time_offset", "max"),
        ({"action": "command", "payload": "say"}, "time_offset", "required"),
        ({"action": "delete_backups", "payload": "3", "time_offset": 0}, "action", "in"),
        ({"action": "command", "payload": "a\nb", "time_offset": 0}, "payload", "regex"),
    ]
    for body, field, rule in bad_tasks:
        refused = await alice.json("POST", tasks, status=422, json=body)
        assert refused["errors"][0]["meta"] == {"source_field": field, "rule": rule}, body
    for _ in range(9):  # the world's schedule has one task: ten in all
        await alice.json(
            "POST", tasks, json={"action": "command", "payload": "say", "time_offset": 0}
        )
    full = await alice.json(
        "POST", tasks, status=400, json={"action": "command", "payload": "say", "time_offset": 0}
    )
    assert full["errors"][0]["code"] == "ServiceLimitExceededException"


async def test_sub_users_need_the_schedule_permissions_and_each_tasks_own(world: World) -> None:
    carol = await pterodactyl_key(world.panel, world.carol, "client")
    schedule = f"{schedules_of(world)}/{world.compat_ids['client']['alice_schedule']}"
    # carol holds console.read only.
    for method, path, body in [
        ("GET", schedules_of(world), None),
        ("POST", schedules_of(world), NIGHTLY),
        ("GET", schedule, None),
        ("POST", schedule, NIGHTLY),
        ("DELETE", schedule, None),
        ("POST", f"{schedule}/execute", None),
        ("POST", f"{schedule}/tasks", {"action": "power", "payload": "start", "time_offset": 0}),
    ]:
        refused = await carol.json(method, path, status=403, json=body)
        assert refused["errors"][0]["code"] == "AccessDeniedHttpException", (method, path)
    await set_carol(
        world, ["schedules.read", "schedules.create", "schedules.update", "control.start"]
    )
    await carol.json("GET", schedule)
    mine = await carol.json("POST", schedules_of(world), json=NIGHTLY)
    tasks = f"{schedules_of(world)}/{mine['attributes']['id']}/tasks"
    # A task needs its own permission too: carol may start the game, not type into it.
    start = {"action": "power", "payload": "start", "time_offset": 0}
    await carol.json("POST", tasks, json=start)
    typed = {"action": "command", "payload": "op carol", "time_offset": 0}
    refused = await carol.json("POST", tasks, status=403, json=typed)
    assert "console.write" in refused["errors"][0]["detail"]
    # Who changes the tasks runs them all: alice's schedule types a command, so not carol.
    refused = await carol.json("POST", f"{schedule}/tasks", status=403, json=start)
    assert "console.write" in refused["errors"][0]["detail"]
    await carol.json("DELETE", schedule, status=403)


async def test_other_servers_schedules_and_tasks_are_not_found(world: World) -> None:
    alice = await pterodactyl_key(world.panel, world.alice, "client")
    bob = await pterodactyl_key(world.panel, world.bob, "client")
    number = world.compat_ids["client"]["alice_schedule"]
    task = world.compat_ids["client"]["alice_schedule_task"]
    # bob's own server, alice's schedule and task numbers.
    bobs = f"/api/client/servers/{await identifier_of(world, 'bob_server')}/schedules"
    for method, path in [
        ("GET", f"{bobs}/{number}"),
        ("POST", f"{bobs}/{number}"),
        ("DELETE", f"{bobs}/{number}"),
        ("POST", f"{bobs}/{number}/execute"),
        ("POST", f"{bobs}/{number}/tasks"),
        ("POST", f"{bobs}/{number}/tasks/{task}"),
        ("DELETE", f"{bobs}/{number}/tasks/{task}"),
    ]:
        body = NIGHTLY if path.endswith(number) and method == "POST" else None
        if "/tasks" in path:
            body = {"action": "command", "payload": "say", "time_offset": 0}
        hidden = await bob.json(method, path, status=404, json=body)
        assert hidden["errors"][0]["code"] == "NotFoundHttpException", (method, path)
    # alice's own task named under her other schedule is not found either.
    other = await alice.json("POST", schedules_of(world), json=NIGHTLY)
    wrong = f"{schedules_of(world)}/{other['attributes']['id']}/tasks/{task}"
    await alice.json(
        "POST", wrong, status=404, json={"action": "command", "payload": "say", "time_offset": 0}
    )
    await alice.json("DELETE", wrong, status=404)
    async with transaction(session_factory(world.panel.server.app[ENGINE])) as db:
        kept = await db.get(Schedule, uuid.UUID(world.ids["alice_schedule"]))
        assert kept is not None
        assert kept.name == "nightly restart"


async def test_a_read_key_reads_but_cannot_create(world: World) -> None:
    reader: Browser = await pterodactyl_key(world.panel, world.alice, "client", ["read"])
    await reader.json("GET", schedules_of(world))
    refused = await reader.json("POST", schedules_of(world), status=403, json=NIGHTLY)
    assert "write" in refused["errors"][0]["detail"]
    schedule = f"{schedules_of(world)}/{world.compat_ids['client']['alice_schedule']}"
    await reader.json("POST", f"{schedule}/execute", status=403)
    await reader.json("DELETE", schedule, status=403)


async def test_running_now_takes_from_our_power_bucket(
    engine: AsyncEngine,
    database_url: str,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
) -> None:
    """Pterodactyl's execute and our run draw from one per-server bucket."""
    limits = "authentication=1000/60,sensitive=1000/60,api=1000/60,files=1000/60,power=3/60"
    settings = load_settings(
        {
            "STELLAR_DATABASE_URL": database_url,
            "STELLAR_AUTH_SECRET": AUTH_SECRET,
            "STELLAR_BCRYPT_COST": "10",
            "STELLAR_RATE_LIMITS": limits,
        }
    )
    panel = Panel(await aiohttp_server(create_app(settings, background_jobs=False)), aiohttp_client)
    world = await build_world(panel)
    alice = await pterodactyl_key(world.panel, world.alice, "client")
    schedule = f"{schedules_of(world)}/{world.compat_ids['client']['alice_schedule']}"
    ours = f"/api/v1/servers/{world.ids['alice_server']}/schedules/{world.ids['alice_schedule']}"
    # Neither waits for the run: each takes a token whatever it answers (202 or 409).
    for response in (
        await alice.request("POST", f"{schedule}/execute"),
        await world.alice.request("POST", f"{ours}/run"),
        await alice.request("POST", f"{schedule}/execute"),
    ):
        assert response.status in (202, 409)
    limited = await alice.json("POST", f"{schedule}/execute", status=429)
    assert limited["errors"][0]["code"] == "TooManyRequestsHttpException"
    await world.alice.json("POST", f"{ours}/run", status=429)
