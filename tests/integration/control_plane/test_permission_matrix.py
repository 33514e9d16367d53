"""Each sub-user permission opens exactly its routes; nobody grants what they do not hold."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import update

from control_plane.api.registry import endpoints
from control_plane.api.routing import Access, Endpoint
from control_plane.db.engine import session_factory
from control_plane.db.models import Schedule, ScheduleTask, Subuser
from control_plane.db.session import transaction
from control_plane.keys import ENGINE
from control_plane.security.permissions import PERMISSIONS, VIEW
from tests.integration.control_plane.test_route_walks import concrete
from tests.support.world import World

POWER_ACTIONS = ("start", "stop", "restart", "kill")


def server_routes() -> list[Endpoint]:
    return [e for e in endpoints() if "{server_id}" in e.path]


def needed(endpoint: Endpoint, action: str | None) -> str | None:
    """The permission a sub-user needs for this call; None: sub-users never may."""
    if endpoint.access is Access.ADMIN:
        return None
    if endpoint.name == "power":
        return f"control.{action}"
    return endpoint.permission


async def set_permissions(world: World, permissions: list[str]) -> None:
    async with transaction(session_factory(world.panel.server.app[ENGINE])) as db:
        await db.execute(
            update(Subuser)
            .where(Subuser.id == uuid.UUID(world.ids["carol_subuser"]))
            .values(permissions=permissions)
        )


async def restore_dave(world: World) -> None:
    """dave, the sub-user routes act on, back if a route (ours or Pterodactyl's) deleted him."""
    dave = uuid.UUID(world.ids["alice_subuser"])
    async with transaction(session_factory(world.panel.server.app[ENGINE])) as db:
        if await db.get(Subuser, dave) is None:
            db.add(
                Subuser(
                    id=dave,
                    server_id=uuid.UUID(world.ids["alice_server"]),
                    user_id=uuid.UUID(world.ids["dave_user"]),
                    permissions=["console.read"],
                )
            )


async def restore_schedule(world: World) -> None:
    """alice's schedule and its task back, with their ids, if a route (ours or
    Pterodactyl's) deleted them: the other route of the same permission acts on them too."""
    schedule_id = uuid.UUID(world.ids["alice_schedule"])
    task_id = uuid.UUID(world.ids["alice_schedule_task"])
    numbers = world.compat_ids["client"]
    async with transaction(session_factory(world.panel.server.app[ENGINE])) as db:
        if await db.get(Schedule, schedule_id) is None:
            db.add(
                Schedule(
                    id=schedule_id,
                    compat_id=int(numbers["alice_schedule"]),
                    server_id=uuid.UUID(world.ids["alice_server"]),
                    creator_id=uuid.UUID(world.ids["alice_user"]),
                    name="nightly restart",
                    cron="30 4 * * *",
                )
            )
            await db.flush()
        if await db.get(ScheduleTask, task_id) is None:
            db.add(
                ScheduleTask(
                    id=task_id,
                    compat_id=int(numbers["alice_schedule_task"]),
                    schedule_id=schedule_id,
                    position=0,
                    action="command",
                    payload={"command": "say hi"},
                )
            )


@pytest.mark.parametrize("granted", sorted(PERMISSIONS))
async def test_each_permission_opens_exactly_its_routes(world: World, granted: str) -> None:
    await set_permissions(world, [granted])
    for endpoint in server_routes():
        actions = POWER_ACTIONS if endpoint.name == "power" else (None,)
        for action in actions:
            await restore_dave(world)
            await restore_schedule(world)
            # Our power route takes {"action"}, Pterodactyl's {"signal"}.
            field = "signal" if endpoint.api == "client" else "action"
            body = {field: action} if action else {}
            response = await world.carol.request(
                endpoint.method, concrete(endpoint, world), json=body
            )
            must = needed(endpoint, action)
            label = f"{granted}: {endpoint.method} {endpoint.path} {action or ''}"
            if must in (granted, VIEW):
                assert response.status not in (401, 403, 404), label
            else:
                assert response.status == 403, f"{label} gave {response.status}"


async def test_wildcards_cover_their_category_only(world: World) -> None:
    await set_permissions(world, ["control.*"])
    server = world.ids["alice_server"]
    for action in POWER_ACTIONS:
        response = await world.carol.request(
            "POST", f"/api/v1/servers/{server}/power", json={"action": action}
        )
        assert response.status == 503  # let through; the node is unreachable
    await world.carol.json("GET", f"/api/v1/servers/{server}/startup", status=403)
    await set_permissions(world, ["*"])
    await world.carol.json("GET", f"/api/v1/servers/{server}/startup")
    # Even '*' is not administration.
    await world.carol.json("POST", f"/api/v1/servers/{server}/suspend", status=403)


async def test_sub_user_cannot_grant_what_they_lack(world: World) -> None:
    await set_permissions(world, ["users.create", "users.update", "console.read"])
    server = world.ids["alice_server"]
    await world.panel.create_user("frank@example.org")
    refused = await world.carol.json(
        "POST",
        f"/api/v1/servers/{server}/users",
        status=403,
        json={"email": "frank@example.org", "permissions": ["console.read", "console.write"]},
    )
    assert "console.write" in refused["error"]["message"]
    await world.carol.json(
        "POST",
        f"/api/v1/servers/{server}/users",
        status=403,
        json={"email": "frank@example.org", "permissions": ["console.*"]},
    )
    granted = await world.carol.json(
        "POST",
        f"/api/v1/servers/{server}/users",
        status=201,
        json={"email": "frank@example.org", "permissions": ["console.read"]},
    )
    await world.carol.json(
        "PATCH",
        f"/api/v1/servers/{server}/users/{granted['id']}",
        status=403,
        json={"permissions": ["*"]},
    )
    audit = await world.admin.json("GET", "/api/v1/audit?action=server.subuser.grant_refused")
    assert audit["meta"]["total"] == 3


async def test_owner_can_grant_anything_but_unknown_permissions(world: World) -> None:
    server = world.ids["alice_server"]
    await world.panel.create_user("erin@example.org")
    bad = await world.alice.json(
        "POST",
        f"/api/v1/servers/{server}/users",
        status=400,
        json={"email": "erin@example.org", "permissions": ["console.read", "root.everything"]},
    )
    assert bad["error"]["details"][0]["loc"] == ["permissions", 1]
    # A node that is no more (it opened nothing) says which one does what it meant.
    retired = await world.alice.json(
        "POST",
        f"/api/v1/servers/{server}/users",
        status=400,
        json={"email": "erin@example.org", "permissions": ["control.console"]},
    )
    assert retired["error"]["details"][0]["msg"] == (
        "unknown permission 'control.console': it is now 'console.write'"
    )
    await world.alice.json(
        "POST",
        f"/api/v1/servers/{server}/users",
        status=201,
        json={"email": "erin@example.org", "permissions": ["*"]},
    )


async def test_revoked_sub_user_loses_access_at_once(world: World) -> None:
    server = world.ids["alice_server"]
    await world.carol.json("GET", f"/api/v1/servers/{server}")
    await world.alice.json(
        "DELETE", f"/api/v1/servers/{server}/users/{world.ids['carol_subuser']}", status=204
    )
    await world.carol.json("GET", f"/api/v1/servers/{server}", status=404)


async def test_server_list_shows_only_what_the_caller_may_see(world: World) -> None:
    def names(page: dict[str, list[dict[str, str]]]) -> list[str]:
        return sorted(s["name"] for s in page["data"])

    assert names(await world.alice.json("GET", "/api/v1/servers")) == ["alice's server"]
    assert names(await world.bob.json("GET", "/api/v1/servers")) == ["bob's server"]
    carol = await world.carol.json("GET", "/api/v1/servers")
    assert names(carol) == ["alice's server"]
    assert carol["data"][0]["permissions"] == ["console.read"]
    assert len((await world.admin.json("GET", "/api/v1/servers"))["data"]) == 2


async def test_hidden_variables_stay_hidden_and_only_editable_ones_change(world: World) -> None:
    server = world.ids["alice_server"]
    startup = await world.alice.json("GET", f"/api/v1/servers/{server}/startup")
    assert [v["env"] for v in startup["variables"]] == ["MOTD"]
    assert startup["command"][-1] == "hello"
    # A valid change goes to the node first; this one is unreachable, so nothing is kept
    # (test_end_to_end.py shows the change reaching a real node).
    unreachable = await world.alice.json(
        "PATCH",
        f"/api/v1/servers/{server}/startup",
        status=503,
        json={"variables": {"MOTD": "good day"}},
    )
    assert unreachable["error"]["code"]
    kept = await world.alice.json("GET", f"/api/v1/servers/{server}/startup")
    assert kept["variables"][0]["value"] == startup["variables"][0]["value"]
    assert kept["command"] == startup["command"]
    bad = await world.alice.json(
        "PATCH",
        f"/api/v1/servers/{server}/startup",
        status=400,
        json={"variables": {"MOTD": "x; rm -rf /", "SECRET_SEED": "1"}},
    )
    assert {tuple(d["loc"]) for d in bad["error"]["details"]} == {
        ("variables", "MOTD"),
        ("variables", "SECRET_SEED"),
    }
    admin_view = await world.admin.json("GET", f"/api/v1/servers/{server}/startup")
    assert [v["env"] for v in admin_view["variables"]] == ["MOTD", "SECRET_SEED"]
