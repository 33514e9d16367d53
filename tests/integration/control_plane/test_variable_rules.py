"""Values that break an egg's variable rules, refused through the real API with a real agent.

The blueprint's variables carry the translation of community eggs' Laravel rules. A server
created, or its startup changed, with a value that breaks one kind of rule gets a 400 whose
detail names that variable, all problems at once, and nothing changes: no server recorded,
the stored values as they were, and no command about servers reaches the node (its request
log, the game container's environment).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from control_plane.services.eggs.rules import translate_rules
from node_agent.docker.hardening import game_container_name
from tests.integration.control_plane.stack import Stack
from tests.support.containers import docker_cli

pytestmark = pytest.mark.docker

# env, the egg's rules, the default, a value that breaks them, the detail it gets
RULES: list[tuple[str, str | list[str], str, str, str]] = [
    (
        "VERSION_CHANNEL",
        "required|string|in:release,snapshot",
        "release",
        "beta",
        "must be one of: release, snapshot",
    ),
    ("MEMORY_RATIO", "required|numeric|between:0.5,2", "1", "lots", "must be a number"),
    (
        "SERVER_JARFILE",
        r"required|regex:/^([\w\d._-]+)(\.jar)$/",
        "server.jar",
        "../server.jar",
        "does not match the required pattern",
    ),
    ("PIN", "required|string|size:4", "1234", "12345", "must be exactly 4 characters"),
    ("MAX_PLAYERS", "required|integer|between:1,100", "20", "101", "must be at most 100"),
    (
        "WORLD_NAME",
        "required|alpha_dash|between:1,10",
        "world",
        "my world",
        "may contain only letters, digits, - and _",
    ),
    (
        "PACK_URL",
        "nullable|url",
        "",
        "ftp://example.com/pack.zip",
        "must be an http:// or https:// URL",
    ),
    ("SERVER_NAME", ["required", "string", "max:32"], "My server", "", "required"),
    # Rules community eggs use most among those added later.
    (
        "MAX_SLOTS",
        "required|numeric|digits_between:1,3",
        "20",
        "1000",
        "must be at most 3 digits long",
    ),
    (
        "BUNGEE_VERSION",
        "required|alpha_num|between:1,6",
        "latest",
        "1.19",
        "may contain only letters and digits",
    ),
    (
        "STEAM_USER",
        "required|string|not_in:anonymous",
        "steam",
        "anonymous",
        "must not be anonymous",
    ),
    ("TICK_RATE", "nullable|integer|gt:0", "", "0", "must be at least 1"),
]
BAD = {env: bad for env, _, _, bad, _ in RULES}
DEFAULTS = {env: default for env, _, default, _, _ in RULES}


def detail(env: str, message: str) -> dict[str, Any]:
    return {"loc": ["variables", env], "msg": message, "type": "value_error"}


ALL_DETAILS = [detail(env, message) for env, _, _, _, message in RULES]


def egg_variables() -> list[dict[str, Any]]:
    variables = []
    for env, rules, default, _, _ in RULES:
        translation = translate_rules(rules)
        assert translation.unknown == []
        variables.append(
            {
                "env": env,
                "name": env.replace("_", " ").title(),
                "default": default,
                "user_editable": True,
                **translation.fields,
            }
        )
    return variables


def node_requests(stack: Stack) -> list[str]:
    """What the agent was told to do with servers (its request log; the control plane's
    background reads of a server's state are left out)."""
    return [
        f"{e.get('method')} {e['path']}"
        for e in stack.agent.log_events()
        if e.get("event") == "request"
        and "/servers" in str(e.get("path"))
        and e.get("method") != "GET"
    ]


def game_environment(server_id: str) -> dict[str, str]:
    """The game container's environment, as ``docker inspect`` shows it."""
    found = docker_cli(
        "inspect", "-f", "{{json .Config.Env}}", game_container_name(uuid.UUID(server_id))
    )
    assert found.returncode == 0, found.stderr
    pairs: list[str] = json.loads(found.stdout)
    return dict(pair.split("=", 1) for pair in pairs)


async def refused_creation(stack: Stack, body: dict[str, Any]) -> dict[str, Any]:
    """The 400 a server creation gets (a server created by mistake is still cleaned up)."""
    response = await stack.admin.request("POST", "/api/v1/servers", json=body)
    answer: dict[str, Any] = await response.json()
    if response.status == 201:
        stack.servers.append(answer["id"])
    assert response.status == 400, answer
    return answer


async def egg_blueprint(stack: Stack) -> str:
    created = await stack.admin.json(
        "POST",
        "/api/v1/blueprints",
        status=201,
        json={
            "name": "egg rules",
            "images": [{"name": "default", "image": "stellar-test/fake-game:latest"}],
            "startup": "/usr/local/bin/fake-game",
            "stop": {"type": "command", "value": "stop"},
            "variables": egg_variables(),
        },
    )
    return str(created["id"])


async def test_a_value_that_breaks_its_rules_is_refused_at_server_creation(
    stack: Stack,
) -> None:
    blueprint_id = await egg_blueprint(stack)
    await stack.add_ports(1)
    owner_id = await stack.panel.create_user("rules@example.org")
    body = {**stack.server_body(owner_id), "blueprint_id": blueprint_id}
    sent_before = node_requests(stack)

    for env, _, _, bad, message in RULES:
        refused = await refused_creation(stack, {**body, "variables": {env: bad}})
        assert refused["error"]["message"] == "invalid variables", env
        assert refused["error"]["details"] == [detail(env, message)], env
    everything = await refused_creation(stack, {**body, "variables": BAD})
    assert everything["error"]["details"] == ALL_DETAILS

    listed = await stack.admin.json("GET", "/api/v1/servers")
    assert listed["meta"]["total"] == 0
    assert node_requests(stack) == sent_before
    # The same body with good values is created on the node.
    created = await stack.admin.json(
        "POST", "/api/v1/servers", status=201, json={**body, "variables": {"PIN": "4321"}}
    )
    stack.servers.append(created["id"])
    assert game_environment(created["id"]).items() >= {**DEFAULTS, "PIN": "4321"}.items()


async def test_a_value_that_breaks_its_rules_is_refused_at_startup_change(
    stack: Stack,
) -> None:
    blueprint_id = await egg_blueprint(stack)
    await stack.add_ports(1)
    owner_id = await stack.panel.create_user("keeper@example.org")
    created = await stack.admin.json(
        "POST",
        "/api/v1/servers",
        status=201,
        json={**stack.server_body(owner_id), "blueprint_id": blueprint_id},
    )
    server_id = created["id"]
    stack.servers.append(server_id)
    owner = await stack.panel.browser()
    await owner.login("keeper@example.org")
    startup = f"/api/v1/servers/{server_id}/startup"
    stored = {v["env"]: v["value"] for v in (await owner.json("GET", startup))["variables"]}
    assert stored == DEFAULTS
    environment = game_environment(server_id)
    sent_before = node_requests(stack)

    for user in (owner, stack.admin):
        for env, _, _, bad, message in RULES:
            refused = await user.json("PATCH", startup, status=400, json={"variables": {env: bad}})
            assert refused["error"]["details"] == [detail(env, message)], env
        everything = await user.json("PATCH", startup, status=400, json={"variables": BAD})
        assert everything["error"]["details"] == ALL_DETAILS

    shown = await stack.admin.json("GET", startup)
    assert {v["env"]: v["value"] for v in shown["variables"]} == DEFAULTS
    assert node_requests(stack) == sent_before
    assert game_environment(server_id) == environment
    # A good value goes through to the node (the stopped game's container is rebuilt).
    await owner.json("PATCH", startup, json={"variables": {"MEMORY_RATIO": "1.5"}})
    assert game_environment(server_id)["MEMORY_RATIO"] == "1.5"
    assert len(node_requests(stack)) > len(sent_before)
