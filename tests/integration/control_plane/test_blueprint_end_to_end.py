"""A blueprint's rules with a real agent: what the node gets, and what users see of it.

Hidden values reach the game but never the owner's answers; the blueprint's deny-list
reaches the agent's file layer, at creation and with every later spec.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from node_agent.docker.hardening import game_container_name
from tests.integration.control_plane.stack import Stack
from tests.support.containers import docker_cli

pytestmark = pytest.mark.docker

SEED = "738291"
MASK = "********"


def game_command(server_id: str) -> list[str]:
    """The game container's command, as ``docker inspect`` shows it."""
    found = docker_cli(
        "inspect", "-f", "{{json .Config.Cmd}}", game_container_name(uuid.UUID(server_id))
    )
    assert found.returncode == 0, found.stderr
    command: list[str] = json.loads(found.stdout)
    return command


def blueprint_body(**fields: Any) -> dict[str, Any]:
    return {
        "name": "fake game, its own",
        "images": [{"name": "default", "image": "stellar-test/fake-game:latest"}],
        "startup": "/usr/local/bin/fake-game",
        "stop": {"type": "command", "value": "stop"},
        **fields,
    }


async def blueprint(stack: Stack, **fields: Any) -> str:
    body = blueprint_body(**fields)
    created = await stack.admin.json("POST", "/api/v1/blueprints", status=201, json=body)
    return str(created["id"])


async def server_of(stack: Stack, blueprint_id: str, email: str, **fields: Any) -> tuple[str, Any]:
    """A new server from the blueprint, and its owner signed in."""
    await stack.add_ports(1)
    owner_id = await stack.panel.create_user(email)
    body = {**stack.server_body(owner_id), "blueprint_id": blueprint_id, **fields}
    created = await stack.admin.json("POST", "/api/v1/servers", status=201, json=body)
    stack.servers.append(created["id"])
    owner = await stack.panel.browser()
    await owner.login(email)
    return created["id"], owner


async def test_the_owner_never_sees_a_hidden_value_the_game_gets(stack: Stack) -> None:
    blueprint_id = await blueprint(
        stack,
        startup="/usr/local/bin/fake-game --motd {{MOTD}} --seed {{SEED}}",
        variables=[
            {"env": "MOTD", "name": "Message", "default": "hello", "user_editable": True},
            {"env": "SEED", "name": "Seed", "type": "integer", "user_viewable": False},
        ],
    )
    server_id, owner = await server_of(
        stack, blueprint_id, "curious@example.org", variables={"SEED": SEED}
    )
    startup = f"/api/v1/servers/{server_id}/startup"

    changed = await owner.json("PATCH", startup, json={"variables": {"MOTD": "good day"}})
    assert changed["command"][-4:] == ["--motd", "good day", "--seed", MASK]
    assert SEED not in json.dumps(changed)
    # The node got the real value (the stopped game's container was rebuilt with it).
    assert game_command(server_id)[-4:] == ["--motd", "good day", "--seed", SEED]

    admin_view = await stack.admin.json("PATCH", startup, json={})
    assert admin_view["command"][-2:] == ["--seed", SEED]
    activity = await owner.request("GET", f"/api/v1/servers/{server_id}/activity")
    assert SEED not in await activity.text()


async def test_the_blueprint_deny_list_keeps_the_file_api_away_from_its_paths(
    stack: Stack,
) -> None:
    blueprint_id = await blueprint(stack, file_denylist=["secrets/", "*.key"])
    server_id, owner = await server_of(stack, blueprint_id, "prober@example.org")
    files = f"/api/v1/servers/{server_id}/files"
    # What the game (or its installer) put there.
    volume = stack.volume(server_id)
    (volume / "secrets").mkdir()
    (volume / "secrets" / "token.txt").write_bytes(b"game token\n")
    (volume / "server.key").write_bytes(b"private key\n")

    read = await owner.json("GET", f"{files}/contents?path=/server.key", status=403)
    assert read["error"] == {
        "code": "forbidden",
        "message": "/server.key is on the server's deny-list",
        "details": [],
    }
    await owner.json("GET", f"{files}/contents?path=/secrets/token.txt", status=403)
    await owner.json("PUT", f"{files}/contents?path=/server.key", status=403, data=b"mine\n")
    await owner.json("PUT", f"{files}/contents?path=/secrets/new.txt", status=403, data=b"x\n")
    await owner.json("GET", f"{files}/list?path=/secrets", status=403)
    assert (volume / "server.key").read_bytes() == b"private key\n"
    assert not (volume / "secrets" / "new.txt").exists()

    await owner.json("PUT", f"{files}/contents?path=/notes.txt", data=b"allowed\n")
    allowed = await owner.request("GET", f"{files}/contents?path=/notes.txt")
    assert allowed.status == 200
    assert await allowed.read() == b"allowed\n"
    listing = await owner.json("GET", f"{files}/list?path=/")
    assert {e["name"] for e in listing["entries"]} == {"notes.txt"}

    # A changed deny-list reaches the node with the server's next spec (PUT .../spec).
    await stack.admin.json(
        "PUT",
        f"/api/v1/blueprints/{blueprint_id}",
        json=blueprint_body(file_denylist=["*.txt"]),
    )
    await owner.json("PATCH", f"/api/v1/servers/{server_id}/startup", json={})
    await owner.json("GET", f"{files}/contents?path=/notes.txt", status=403)
    await owner.json("GET", f"{files}/contents?path=/secrets/token.txt", status=403)
    key = await owner.request("GET", f"{files}/contents?path=/server.key")
    assert key.status == 200
    assert await key.read() == b"private key\n"


async def test_a_changed_blueprint_reaches_the_game_at_its_next_start(stack: Stack) -> None:
    blueprint_id = await blueprint(
        stack,
        startup="/usr/local/bin/fake-game --motd {{MOTD}}",
        variables=[{"env": "MOTD", "name": "Message", "default": "hello", "user_editable": True}],
    )
    server_id, owner = await server_of(
        stack, blueprint_id, "patient@example.org", variables={"MOTD": "mine"}
    )
    # An egg imported again, say: a new variable and a new startup command.
    await stack.admin.json(
        "PUT",
        f"/api/v1/blueprints/{blueprint_id}",
        json=blueprint_body(
            startup="/usr/local/bin/fake-game --motd {{MOTD}} --slots {{SLOTS}}",
            variables=[
                {"env": "MOTD", "name": "Message", "default": "hi", "user_editable": True},
                {"env": "SLOTS", "name": "Slots", "type": "integer", "default": "8"},
            ],
        ),
    )
    # Not before the start: the stopped game's container is as it was.
    assert game_command(server_id)[-2:] == ["--motd", "mine"]

    power = f"/api/v1/servers/{server_id}/power"
    await owner.json("POST", power, status=202, json={"action": "start"})
    # The server keeps its own value; the new variable has the blueprint's default.
    assert game_command(server_id)[-4:] == ["--motd", "mine", "--slots", "8"]
    startup = await owner.json("GET", f"/api/v1/servers/{server_id}/startup")
    assert {v["env"]: v["value"] for v in startup["variables"]}["MOTD"] == "mine"
    await owner.json("POST", power, status=202, json={"action": "kill"})


def container_field(server_id: str, template: str) -> Any:
    found = docker_cli("inspect", "-f", template, game_container_name(uuid.UUID(server_id)))
    assert found.returncode == 0, found.stderr
    return json.loads(found.stdout)


async def test_a_stored_value_a_tightened_rule_refuses_stops_the_next_start(stack: Stack) -> None:
    variables = [
        {"env": "MOTD", "name": "Message", "default": "hello", "user_editable": True},
        {"env": "SEED", "name": "Seed", "type": "integer", "user_viewable": False},
    ]
    startup = "/usr/local/bin/fake-game --motd {{MOTD}} --seed {{SEED}}"
    blueprint_id = await blueprint(stack, startup=startup, variables=variables)
    server_id, owner = await server_of(
        stack,
        blueprint_id,
        "tightened@example.org",
        variables={"MOTD": "a long message", "SEED": SEED},
    )
    # The egg is imported again, say: shorter messages, smaller seeds, a longer stop timeout.
    variables[0]["max"] = 8
    variables[1]["max"] = 1000
    await stack.admin.json(
        "PUT",
        f"/api/v1/blueprints/{blueprint_id}",
        json=blueprint_body(startup=startup, variables=variables, stop_timeout_seconds=75),
    )
    before = game_command(server_id)
    power = f"/api/v1/servers/{server_id}/power"
    refused = await owner.json("POST", power, status=400, json={"action": "start"})
    assert refused["error"]["message"] == "invalid variables"
    # The owner is told what to fix, and that the hidden one is an administrator's to fix.
    assert refused["error"]["details"] == [
        {
            "loc": ["variables", "MOTD"],
            "msg": "must be at most 8 characters",
            "type": "value_error",
        },
        {
            "loc": ["variables"],
            "msg": "a variable only administrators see is not valid: ask an administrator",
            "type": "value_error",
        },
    ]
    admin_refused = await stack.admin.json("POST", power, status=400, json={"action": "restart"})
    assert [d["loc"] for d in admin_refused["error"]["details"]] == [
        ["variables", "MOTD"],
        ["variables", "SEED"],
    ]
    # Nothing reached the node: the container is the one made at creation, and stopped.
    assert game_command(server_id) == before
    assert container_field(server_id, "{{json .State.Running}}") is False
    assert container_field(server_id, "{{json .Config.StopTimeout}}") == 30

    await stack.admin.json(
        "PATCH",
        f"/api/v1/servers/{server_id}/startup",
        json={"variables": {"MOTD": "short", "SEED": "42"}},
    )
    await owner.json("POST", power, status=202, json={"action": "start"})
    assert game_command(server_id)[-4:] == ["--motd", "short", "--seed", "42"]
    # The blueprint's stop timeout reaches the container.
    assert container_field(server_id, "{{json .Config.StopTimeout}}") == 75
    await owner.json("POST", power, status=202, json={"action": "kill"})
