"""A blueprint's startup command and variables, on SQLite and PostgreSQL alike.

What users may not see stays hidden, the command included; problems are a 400 with details
(never a 500), caught when the administrator saves the blueprint wherever they can be.
test_blueprint_end_to_end.py shows the same rules with a real agent.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from sqlalchemy import update

from control_plane.db.engine import session_factory
from control_plane.db.models import Blueprint, Server, Subuser
from control_plane.db.session import transaction
from control_plane.keys import ENGINE
from tests.support.panel import Browser
from tests.support.world import BLUEPRINT, World

MASK = "********"
SEED = "738291"  # distinctive: found nowhere else in an answer


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
    changed_seed = {**seed, "default": "1500", "min": 1000, "max": 2000}
    await replace_blueprint(world, variables=[motd, changed_seed])
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


# --- 3. the limits of the startup command -------------------------------------------------

MOTD_FREE = {"env": "MOTD", "name": "Message", "default": "hello", "user_editable": True}


def server_body(world: World, **fields: Any) -> dict[str, Any]:
    return {
        "name": "another",
        "owner_id": world.ids["alice_user"],
        "blueprint_id": world.ids["blueprint"],
        "node_id": world.ids["node"],
        "memory_mib": 512,
        "cpu_percent": 100,
        "disk_mib": 1024,
        **fields,
    }


async def server_count(world: World) -> int:
    listed = await world.admin.json("GET", "/api/v1/servers")
    return int(listed["meta"]["total"])


async def saved(world: World, status: int, **changes: Any) -> list[dict[str, Any]]:
    """Save the blueprint with ``changes``, new (POST) and over the world's (PUT); both
    answer ``status``; the details of the refusal."""
    created = await world.admin.json(
        "POST",
        "/api/v1/blueprints",
        status=201 if status == 200 else status,
        json={**BLUEPRINT, "name": f"try {uuid.uuid4().hex[:8]}", **changes},
    )
    replaced = await world.admin.json(
        "PUT",
        f"/api/v1/blueprints/{world.ids['blueprint']}",
        status=status,
        json={**BLUEPRINT, **changes},
    )
    if status == 200:
        return []
    assert created["error"]["details"] == replaced["error"]["details"]
    details: list[dict[str, Any]] = created["error"]["details"]
    return details


async def test_startup_problems_are_refused_when_the_blueprint_is_saved(world: World) -> None:
    (unbalanced,) = await saved(world, 400, startup='/usr/local/bin/fake-game --motd "{{MOTD}}')
    assert unbalanced["loc"] == ["startup"]
    assert "cannot be split into arguments: No closing quotation" in unbalanced["msg"]

    (too_many,) = await saved(world, 400, startup="/usr/local/bin/fake-game" + " -v" * 256)
    assert too_many["loc"] == ["startup"]
    assert "splits into 257 arguments, at most 256" in too_many["msg"]
    await saved(world, 200, startup="/usr/local/bin/fake-game" + " -v" * 255)

    (too_long,) = await saved(
        world,
        400,
        startup="/usr/local/bin/fake-game --motd={{MOTD}}{{MOTD}}",
        variables=[{**MOTD_FREE, "default": "x" * 2100}],
    )
    assert too_long["loc"] == []
    assert "startup argument 1 is longer than 4096 characters" in too_long["msg"]


async def test_a_default_that_fails_its_own_rules_is_refused_when_saved(world: World) -> None:
    motd, seed = BLUEPRINT["variables"]
    details = await saved(
        world,
        400,
        variables=[
            {**motd, "default": "not; allowed"},
            {**seed, "default": "many"},
            {"env": "LEVEL", "name": "Level", "default": "x" * 9, "max": 8},
            {"env": "PVP", "name": "PvP", "type": "boolean", "default": "yes"},
            {"env": "SLOTS", "name": "Slots", "type": "integer", "default": "5", "min": 10},
        ],
    )
    assert [(d["loc"], d["msg"]) for d in details] == [
        (["variables", 0], "Value error, default: does not match the required pattern"),
        (["variables", 1], "Value error, default: must be a whole number"),
        (["variables", 2], "Value error, default: must be at most 8 characters"),
        (["variables", 3], "Value error, default: must be true or false"),
        (["variables", 4], "Value error, default: must be at least 10"),
    ]
    # An empty default of a required variable means: give one when creating a server.
    required = {"env": "TOKEN", "name": "Token", "required": True, "regex": "^[a-z]+$"}
    await saved(world, 200, variables=[motd, seed, required])
    refused = await world.admin.json("POST", "/api/v1/servers", status=400, json=server_body(world))
    assert refused["error"]["details"] == [
        {"loc": ["variables", "TOKEN"], "msg": "required", "type": "value_error"}
    ]


async def test_an_argument_over_the_limit_is_a_400_at_creation_and_startup_change(
    world: World,
) -> None:
    _, seed = BLUEPRINT["variables"]
    await replace_blueprint(
        world,
        startup="/usr/local/bin/fake-game --motd={{MOTD}}{{MOTD}}",
        variables=[MOTD_FREE, seed],
    )
    before = await server_count(world)
    expected = [
        {
            "loc": ["startup", 1],
            "msg": "longer than 4096 characters once its placeholders are filled in",
            "type": "value_error",
        }
    ]
    created = await world.admin.json(
        "POST",
        "/api/v1/servers",
        status=400,
        json=server_body(world, variables={"MOTD": "x" * 2100}),
    )
    assert created["error"]["message"] == "the startup command would be too long"
    assert created["error"]["details"] == expected
    assert await server_count(world) == before

    server = world.ids["alice_server"]
    for user in (world.alice, world.admin):
        changed = await user.json(
            "PATCH",
            f"/api/v1/servers/{server}/startup",
            status=400,
            json={"variables": {"MOTD": "x" * 2100}},
        )
        assert changed["error"]["details"] == expected
    # Just at the limit: let through (to the node, which this world cannot reach).
    await world.alice.json(
        "PATCH",
        f"/api/v1/servers/{server}/startup",
        status=503,
        json={"variables": {"MOTD": "x" * 2044}},
    )


async def test_a_blueprint_stored_before_these_checks_gets_a_400_not_a_500(world: World) -> None:
    """Blueprints saved by an older version may break the rules saving now enforces."""
    server = world.ids["alice_server"]
    cases = [
        ("/usr/local/bin/fake-game" + " -v" * 300, [], "301 arguments, at most 256"),
        ("/usr/local/bin/fake-game 'oops", [], "be split into arguments: No closing quotation"),
        ("/usr/local/bin/fake-game", ["", "ok"], "the server's specification is not valid"),
    ]
    for startup, denylist, message in cases:
        async with transaction(session_factory(world.panel.server.app[ENGINE])) as db:
            await db.execute(
                update(Blueprint)
                .where(Blueprint.id == uuid.UUID(world.ids["blueprint"]))
                .values(startup=startup, file_denylist=denylist)
            )
        created = await world.admin.json(
            "POST", "/api/v1/servers", status=400, json=server_body(world)
        )
        assert message in created["error"]["message"]
        changed = await world.alice.json(
            "PATCH", f"/api/v1/servers/{server}/startup", status=400, json={}
        )
        assert changed["error"] == created["error"]


# --- 4. digits are ASCII digits -----------------------------------------------------------

# Arabic-Indic, fullwidth, NKo, Devanagari: decimal digits to Python's \d and int().
OTHER_DIGITS = ["\u0663", "\uff14\uff12", "-\u0663", "\u07c9", "\u0967\u0968"]


async def test_integers_and_patterns_take_ascii_digits_only(world: World) -> None:
    motd, seed = BLUEPRINT["variables"]
    level = {
        "env": "LEVEL",
        "name": "Level",
        "default": "1",
        "regex": r"^\d{1,3}$",
        "user_editable": True,
    }
    await replace_blueprint(world, variables=[motd, seed, level])
    server = world.ids["alice_server"]
    startup = f"/api/v1/servers/{server}/startup"
    for digits in OTHER_DIGITS:
        refused = await world.admin.json(
            "PATCH",
            startup,
            status=400,
            json={"variables": {"SECRET_SEED": digits, "LEVEL": digits}},
        )
        assert [(d["loc"], d["msg"]) for d in refused["error"]["details"]] == [
            (["variables", "SECRET_SEED"], "must be a whole number"),
            (["variables", "LEVEL"], "does not match the required pattern"),
        ]
        created = await world.admin.json(
            "POST",
            "/api/v1/servers",
            status=400,
            json=server_body(world, variables={"SECRET_SEED": digits}),
        )
        assert created["error"]["details"][0]["loc"] == ["variables", "SECRET_SEED"]
        await saved(world, 400, variables=[motd, {**seed, "default": digits}, level])
    # ASCII digits pass (and go to the node, which this world cannot reach).
    await world.admin.json(
        "PATCH", startup, status=503, json={"variables": {"SECRET_SEED": "-7", "LEVEL": "12"}}
    )


# --- 5. patterns that run away --------------------------------------------------------------


async def test_runaway_patterns_are_stopped_within_one_budget_per_request(
    world: World,
) -> None:
    """Each match gets 50 ms, and one request's matches 0.2 s together: 64 variables whose
    pattern backtracks without end would otherwise hold the event loop for 3.2 s."""
    runaway = [
        {
            "env": f"V{n}",
            "name": f"V{n}",
            "default": "aa",
            "regex": "^(a|aa)+$",
            "user_editable": True,
        }
        for n in range(64)
    ]
    await replace_blueprint(world, startup="/usr/local/bin/fake-game", variables=runaway)
    value = "a" * 4095 + "!"
    started = time.monotonic()
    refused = await world.alice.json(
        "PATCH",
        f"/api/v1/servers/{world.ids['alice_server']}/startup",
        status=400,
        json={"variables": {v["env"]: value for v in runaway}},
    )
    elapsed = time.monotonic() - started
    assert [d["msg"] for d in refused["error"]["details"]] == [
        "took too long to check against the required pattern"
    ] * 64
    assert elapsed < 1.5
