"""A blueprint's startup command and variables, on SQLite and PostgreSQL alike.

What users may not see stays hidden, the command included; problems are a 400 with details
(never a 500), caught when the administrator saves the blueprint wherever they can be.
test_blueprint_end_to_end.py shows the same rules with a real agent.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from sqlalchemy import update

from control_plane.db.engine import session_factory
from control_plane.db.models import Server, Subuser
from control_plane.db.session import transaction
from control_plane.keys import ENGINE
from tests.support.panel import Browser, Panel
from tests.support.world import BLUEPRINT, World, build_world

MASK = "********"
SEED = "738291"  # distinctive: found nowhere else in an answer


@pytest.fixture
async def world(panel: Panel) -> World:
    return await build_world(panel)


async def replace_blueprint(world: World, **changes: Any) -> None:
    """The world's blueprint, as the administrator saves it with ``changes``."""
    await world.admin.json(
        "PUT", f"/api/v1/blueprints/{world.ids['blueprint']}", json={**BLUEPRINT, **changes}
    )


async def store(world: World, server_id: str, variables: dict[str, str]) -> None:
    """Values as if an administrator had set them (the world's node is never reached)."""
    async with transaction(session_factory(world.panel.server.app[ENGINE])) as db:
        await db.execute(
            update(Server).where(Server.id == uuid.UUID(server_id)).values(variables=variables)
        )


async def grant(world: World, permissions: list[str]) -> None:
    async with transaction(session_factory(world.panel.server.app[ENGINE])) as db:
        await db.execute(
            update(Subuser)
            .where(Subuser.id == uuid.UUID(world.ids["carol_subuser"]))
            .values(permissions=permissions)
        )


async def text_of(browser: Browser, method: str, path: str, **kwargs: Any) -> str:
    response = await browser.request(method, path, **kwargs)
    return await response.text()


# --- 1. hidden variables ------------------------------------------------------------------


async def test_hidden_values_are_masked_in_the_command_for_owners_and_sub_users(
    world: World,
) -> None:
    await replace_blueprint(
        world,
        startup="/usr/local/bin/fake-game --motd {{MOTD}} --seed {{SECRET_SEED}} "
        "--level=seed-{{SECRET_SEED}}",
    )
    server = world.ids["alice_server"]
    await store(world, server, {"MOTD": "hello", "SECRET_SEED": SEED})
    await grant(world, ["startup.read", "activity.read"])
    startup = f"/api/v1/servers/{server}/startup"

    for user in (world.alice, world.carol):
        shown = await user.json("GET", startup)
        assert shown["command"] == [
            "/usr/local/bin/fake-game",
            "--motd",
            "hello",
            "--seed",
            MASK,
            f"--level=seed-{MASK}",
        ]
        assert [v["env"] for v in shown["variables"]] == ["MOTD"]
        assert SEED not in json.dumps(shown)

    admin_view = await world.admin.json("GET", startup)
    assert admin_view["command"][-2:] == [SEED, f"--level=seed-{SEED}"]
    assert [v["env"] for v in admin_view["variables"]] == ["MOTD", "SECRET_SEED"]


async def test_no_other_answer_to_users_holds_a_hidden_value(world: World) -> None:
    await replace_blueprint(
        world, startup="/usr/local/bin/fake-game --motd {{MOTD}} --seed {{SECRET_SEED}}"
    )
    server = world.ids["alice_server"]
    await store(world, server, {"MOTD": "hello", "SECRET_SEED": SEED})
    await grant(world, ["*"])
    for user in (world.alice, world.carol):
        answers = [
            await text_of(user, "GET", "/api/v1/servers"),
            await text_of(user, "GET", f"/api/v1/servers/{server}"),
            await text_of(user, "GET", f"/api/v1/servers/{server}/activity"),
            # Refused changes: a bad value, a hidden name, an unknown image.
            await text_of(
                user,
                "PATCH",
                f"/api/v1/servers/{server}/startup",
                json={"variables": {"MOTD": "x; y", "SECRET_SEED": "1"}},
            ),
            await text_of(
                user, "PATCH", f"/api/v1/servers/{server}/startup", json={"image": "nope:1"}
            ),
        ]
        for answer in answers:
            assert SEED not in answer


async def test_a_hidden_variable_that_breaks_its_rules_is_not_named_to_users(
    world: World,
) -> None:
    """A hidden value that no longer passes (the blueprint changed) stops the user's change,
    but the user learns neither the variable nor its rule, only that an administrator must
    act; an administrator gets the full detail."""
    motd, seed = BLUEPRINT["variables"]
    await replace_blueprint(world, variables=[motd, {**seed, "min": 1000, "max": 2000}])
    server = world.ids["alice_server"]
    refused = await world.alice.json(
        "PATCH",
        f"/api/v1/servers/{server}/startup",
        status=400,
        json={"variables": {"MOTD": "good day"}},
    )
    assert refused["error"]["details"] == [
        {
            "loc": ["variables"],
            "msg": "a variable only administrators see is not valid: ask an administrator",
            "type": "value_error",
        }
    ]
    assert "SECRET_SEED" not in json.dumps(refused)
    admin_refused = await world.admin.json(
        "PATCH", f"/api/v1/servers/{server}/startup", status=400, json={}
    )
    assert admin_refused["error"]["details"] == [
        {"loc": ["variables", "SECRET_SEED"], "msg": "must be at least 1000", "type": "value_error"}
    ]


# --- 2. the deny-list -----------------------------------------------------------------------


async def test_deny_list_patterns_the_node_would_refuse_are_refused_at_save(
    world: World,
) -> None:
    refused = await world.admin.json(
        "POST",
        "/api/v1/blueprints",
        status=400,
        json={**BLUEPRINT, "name": "bad list", "file_denylist": ["ok/", "", "a\nb", "x" * 513]},
    )
    locs = [d["loc"] for d in refused["error"]["details"]]
    assert locs == [["file_denylist", 1], ["file_denylist", 2], ["file_denylist", 3]]
