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
from tests.integration.node_agent.live_agent import docker_cli

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


async def blueprint(stack: Stack, **fields: Any) -> str:
    body = {
        "name": f"fake game {uuid.uuid4().hex[:8]}",
        "images": [{"name": "default", "image": "stellar-test/fake-game:latest"}],
        "startup": "/usr/local/bin/fake-game",
        "stop": {"type": "command", "value": "stop"},
        **fields,
    }
    created = await stack.admin.json("POST", "/api/v1/blueprints", status=201, json=body)
    return str(created["id"])


async def test_the_owner_never_sees_a_hidden_value_the_game_gets(stack: Stack) -> None:
    blueprint_id = await blueprint(
        stack,
        startup="/usr/local/bin/fake-game --motd {{MOTD}} --seed {{SEED}}",
        variables=[
            {"env": "MOTD", "name": "Message", "default": "hello", "user_editable": True},
            {"env": "SEED", "name": "Seed", "type": "integer", "user_viewable": False},
        ],
    )
    await stack.add_ports(1)
    owner_id = await stack.panel.create_user("curious@example.org")
    created = await stack.admin.json(
        "POST",
        "/api/v1/servers",
        status=201,
        json={
            **stack.server_body(owner_id),
            "blueprint_id": blueprint_id,
            "variables": {"SEED": SEED},
        },
    )
    server_id = created["id"]
    stack.servers.append(server_id)
    assert SEED not in json.dumps(created)
    owner = await stack.panel.browser()
    await owner.login("curious@example.org")
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
