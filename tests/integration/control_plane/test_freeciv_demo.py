"""The Freeciv demo, as the README shows it: ``stellar-cp demo create``, then its console.

The real CLI (``python -m control_plane``, what ``stellar-cp`` runs) works on the database of a
real control plane with the control plane's signing key, and commands a real agent: it saves
the "Freeciv (demo)" blueprint, gives the node a port, creates and starts the server. The game
(Debian's freeciv-server in the locally built image) then answers ``list`` on its console,
both through the control plane's console WebSocket and through ``stellar-cp server console``.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine
from yarl import URL

from control_plane.db.models import AuditEntry, Blueprint, Server
from node_agent.docker.hardening import game_container_name
from tests.conftest import service_missing
from tests.integration.control_plane.conftest import AUTH_SECRET
from tests.integration.control_plane.stack import Stack, read_until, wait_for_state
from tests.support.containers import REPO_ROOT, docker_cli

pytestmark = [pytest.mark.slow, pytest.mark.docker, pytest.mark.timeout(600)]

BUILD_SCRIPT: Final = REPO_ROOT / "deploy" / "images" / "freeciv" / "build.sh"
IMAGE: Final = "stellarstack/freeciv-demo:3.0"
READY: Final = "Now accepting new client connections"
LIST_ANSWER: Final = "List of players:"
PLAYER: Final = "player@example.org"


@pytest.fixture(scope="module")
def freeciv_image() -> None:
    """The demo image, built as ``stellar-cp demo create`` builds it (quick when current)."""
    result = subprocess.run(
        [str(BUILD_SCRIPT)], capture_output=True, text=True, timeout=540, check=False
    )
    if result.returncode != 0:
        if "missing package" in result.stderr:
            service_missing(result.stderr.strip())
        pytest.fail(f"{BUILD_SCRIPT.name} failed:\n{result.stderr}")


@dataclass(frozen=True)
class Ran:
    code: int
    out: str
    err: str


async def stellar_cp(database_url: str, tmp_path: Path, *args: str, stdin: bytes = b"") -> Ran:
    """``stellar-cp *args`` in a subprocess with the stack's control-plane environment."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("STELLAR_")}
    env |= {
        "STELLAR_DATABASE_URL": database_url,
        "STELLAR_SIGNING_KEY_FILE": str(tmp_path / "signing.key"),
        "STELLAR_AUTH_SECRET": AUTH_SECRET,
        "PYTHONPATH": str(REPO_ROOT),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "control_plane", *args, env=env, stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(stdin), timeout=240)
    assert process.returncode is not None
    return Ran(process.returncode, out.decode(), err.decode())


async def test_stellar_cp_creates_the_freeciv_demo_and_it_answers_list(
    freeciv_image: None, stack: Stack, database_url: str, engine: AsyncEngine, tmp_path: Path
) -> None:
    owner_id = await stack.panel.create_user(PLAYER)

    created = await stellar_cp(
        database_url, tmp_path, "demo", "create", "--node", "node-1", "--owner", PLAYER
    )

    assert created.code == 0, created.err
    found = re.search(r"Freeciv demo server ([0-9a-f-]{36}) created", created.out)
    assert found, created.out
    server_id = found[1]
    stack.servers.append(server_id)
    assert f"stellar-cp server console {server_id}" in created.out
    owner = await stack.panel.browser()
    await owner.login(PLAYER)
    server = await owner.json("GET", f"/api/v1/servers/{server_id}")
    assert server["owner_id"] == owner_id
    assert server["image"] == IMAGE
    # The node had no port: the demo gave it one, and the output names it.
    [allocation] = server["allocations"]
    assert f"{allocation['ip']}:{allocation['port']}" in created.out
    blueprints = await stack.admin.json("GET", "/api/v1/blueprints")
    demo = [b for b in blueprints["data"] if b["name"] == "Freeciv (demo)"]
    assert [b["id"] for b in demo] == [server["blueprint_id"]]
    assert demo[0]["stop"] == {"type": "command", "value": "quit"}
    async with engine.connect() as db:
        markers = await db.scalar(
            select(Blueprint.startup_done).where(Blueprint.id == uuid.UUID(demo[0]["id"]))
        )
    assert markers == [READY]

    # The game runs hardened, as every game does.
    inspected = docker_cli(
        "inspect", "-f", "{{.Config.User}} {{.HostConfig.ReadonlyRootfs}}",
        game_container_name(uuid.UUID(server_id)),
    )  # fmt: skip
    assert inspected.stdout.split() == ["1000:1000", "true"]
    await wait_for_state(owner, server_id, "running", timeout=60)

    # The owner's console on the control plane: the game is up, and it answers `list`.
    async with owner.client.ws_connect(f"/api/v1/servers/{server_id}/console") as socket:
        await read_until(socket, READY, timeout=60)
        await socket.send_json({"event": "send command", "args": ["list"]})
        await read_until(socket, LIST_ANSWER)
    # A Pterodactyl-style client: a console token, the socket without credentials, `auth`.
    token = await owner.json("GET", f"/api/v1/servers/{server_id}/console/token")
    bot = await stack.panel.browser()
    async with bot.client.ws_connect(URL(token["socket"]).path) as socket:
        await socket.send_json({"event": "auth", "args": [token["token"]]})
        await read_until(socket, READY, timeout=60)
        await socket.send_json({"event": "send command", "args": ["list"]})
        await read_until(socket, LIST_ANSWER)
    # Clients can connect to the game's port.
    _, writer = await asyncio.open_connection(allocation["ip"], allocation["port"])
    writer.close()
    await writer.wait_closed()

    # The README's way: the CLI's console types stdin's lines and prints the answer.
    console = await stellar_cp(
        database_url, tmp_path, "server", "console", server_id, stdin=b"list\n"
    )

    assert console.code == 0, console.err
    assert console.out.count(LIST_ANSWER) >= 2, console.out  # the earlier answer, then ours
    assert "AI*1" in console.out
    # Stopping types `quit`: the game says goodbye and ends by itself, not killed.
    await owner.json(
        "POST", f"/api/v1/servers/{server_id}/power", status=202, json={"action": "stop"}
    )
    await wait_for_state(owner, server_id, "offline", timeout=60)
    exited = docker_cli(
        "inspect", "-f", "{{.State.ExitCode}}", game_container_name(uuid.UUID(server_id))
    )
    assert exited.stdout.strip() == "0"
    logs = await owner.json("GET", f"/api/v1/servers/{server_id}/logs")
    assert "Goodbye." in logs["lines"]

    # What the CLI did is in the audit trail, as the routes' actions are.
    async with engine.connect() as db:
        trail = (
            await db.execute(
                select(AuditEntry.action, AuditEntry.details)
                .where(AuditEntry.target_id == server_id)
                .order_by(AuditEntry.id)
            )
        ).all()
    assert [(action, details.get("by")) for action, details in trail] == [
        ("server.created", "cli"),
        ("server.power.start", "cli"),
        ("server.console.opened", None),  # the owner's, on the control plane
        ("server.console.command", None),
        ("server.console.opened", None),  # the token socket's
        ("server.console.command", None),
        ("server.console.command", "cli"),
        ("server.power.stop", None),
    ]


async def test_the_cli_names_a_missing_node_owner_or_server_and_creates_nothing(
    freeciv_image: None, stack: Stack, database_url: str, engine: AsyncEngine, tmp_path: Path
) -> None:
    no_node = await stellar_cp(database_url, tmp_path, "demo", "create", "--node", "moon")
    no_owner = await stellar_cp(
        database_url, tmp_path, "demo", "create", "--node", "node-1", "--owner", "ghost@example.org"
    )
    bad_ip = await stellar_cp(
        database_url, tmp_path, "demo", "create", "--node", "node-1", "--ip", "not-an-ip"
    )
    ghost = uuid.uuid4()
    no_server = await stellar_cp(database_url, tmp_path, "server", "console", str(ghost))

    assert (no_node.code, no_node.err.strip()) == (1, "stellar-cp: no node named 'moon'")
    assert no_owner.code == 1
    assert "no user 'ghost@example.org'" in no_owner.err
    assert "stellar-cp user create --email ghost@example.org" in no_owner.err
    assert (bad_ip.code, bad_ip.err.strip()) == (1, "stellar-cp: 'not-an-ip' is not an IP address")
    assert (no_server.code, no_server.err.strip()) == (1, f"stellar-cp: no server {ghost}")
    async with engine.connect() as db:
        assert await db.scalar(select(func.count()).select_from(Server)) == 0
