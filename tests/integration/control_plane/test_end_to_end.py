"""The whole system: a real control plane, a real agent process and real Docker.

Admin builds the infrastructure through the API; a user starts their server, reads its
console through the control plane's WebSocket, sends a command and sees the answer, stops
it; the audit trail shows each step. Also: concurrent creates never share a port, a
revoked sub-user's open console is closed at once, a startup change reaches the game at its
restart, and an administrator's reinstall runs the install step again; a new main port
reaches the game at its restart.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import tarfile
import time
import uuid

import aiohttp
import pytest

from node_agent.docker.hardening import game_container_name
from tests.integration.control_plane.stack import (
    Stack,
    next_error,
    read_until,
    wait_for_backup,
    wait_for_state,
)
from tests.support.containers import docker_cli

pytestmark = pytest.mark.docker


async def test_user_runs_their_server_through_the_control_plane(stack: Stack) -> None:
    await stack.add_ports(1)
    owner_id = await stack.panel.create_user("player@example.org")
    created = await stack.admin.json(
        "POST", "/api/v1/servers", status=201, json=stack.server_body(owner_id)
    )
    server_id = created["id"]
    stack.servers.append(server_id)
    port = created["allocations"][0]["port"]

    player = await stack.panel.browser()
    await player.login("player@example.org")
    await player.json(
        "POST", f"/api/v1/servers/{server_id}/power", status=202, json={"action": "start"}
    )
    await wait_for_state(player, server_id, "running")  # from the node's event stream

    async with player.client.ws_connect(f"/api/v1/servers/{server_id}/console") as console:
        await read_until(console, "fake-game started")
        await console.send_json({"event": "send command", "args": ["say hello from the socket"]})
        await read_until(console, "hello from the socket")
        await player.json(
            "POST",
            f"/api/v1/servers/{server_id}/command",
            status=204,
            json={"command": "say hello from REST"},
        )
        await read_until(console, "hello from REST")
        # The agent's own token bookkeeping never reaches the browser; unknown events refused.
        await console.send_json({"event": "auth", "args": ["x"]})
        await next_error(console)

    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    assert await reader.readline()  # the game answers on its published port
    writer.close()
    await writer.wait_closed()

    await player.json(
        "POST", f"/api/v1/servers/{server_id}/power", status=202, json={"action": "stop"}
    )
    await wait_for_state(player, server_id, "offline")

    trail = await stack.admin.json(
        "GET", f"/api/v1/audit?target_type=server&target_id={server_id}&per_page=100"
    )
    actions = [e["action"] for e in reversed(trail["data"])]
    assert actions == [
        "server.created",
        "server.power.start",
        "server.console.opened",
        "server.console.command",  # over the socket, recorded like its HTTP twin
        "server.console.command",
        "server.power.stop",
    ]


async def test_concurrent_creates_never_share_a_port(stack: Stack) -> None:
    ports = await stack.add_ports(10)
    owner_id = await stack.panel.create_user("busy@example.org")
    responses = await asyncio.gather(
        *(
            stack.admin.request(
                "POST", "/api/v1/servers", json=stack.server_body(owner_id, f"s{n}")
            )
            for n in range(20)
        )
    )
    statuses = sorted(r.status for r in responses)
    bodies = [await r.json() for r in responses]
    stack.servers.extend(b["id"] for b in bodies if "id" in b)
    assert statuses == [201] * 10 + [409] * 10, statuses
    taken = [b["allocations"][0]["port"] for b in bodies if "id" in b]
    assert sorted(taken) == sorted(ports)
    refusals = {b["error"]["message"] for b in bodies if "error" in b}
    assert refusals == {"node 'node-1' has no free port"}


async def test_revoking_a_sub_user_closes_their_open_console(stack: Stack) -> None:
    server_id, owner = await stack.owned_server("owner@example.org")
    await stack.panel.create_user("helper@example.org")
    sub = await owner.json(
        "POST",
        f"/api/v1/servers/{server_id}/users",
        status=201,
        json={"email": "helper@example.org", "permissions": ["console.read"]},
    )
    helper = await stack.panel.browser()
    await helper.login("helper@example.org")
    async with helper.client.ws_connect(f"/api/v1/servers/{server_id}/console") as console:
        # console.read only: typing a command is refused by the control plane.
        await console.send_json({"event": "send command", "args": ["say not allowed"]})
        assert "console.write" in await next_error(console)
        started = time.monotonic()
        await owner.json(
            "PATCH",
            f"/api/v1/servers/{server_id}/users/{sub['id']}",
            json={"permissions": ["stats.read"]},
        )
        message = await console.receive(timeout=5)
        while message.type == aiohttp.WSMsgType.TEXT:
            message = await console.receive(timeout=5)
        assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert console.close_code == 4403
        assert time.monotonic() - started < 2
    refused = await helper.request("GET", f"/api/v1/servers/{server_id}/console")
    assert refused.status == 403


async def test_files_stream_through_the_control_plane(stack: Stack) -> None:
    server_id, owner = await stack.owned_server("builder@example.org")
    files = f"/api/v1/servers/{server_id}/files"

    payload = bytes(range(256)) * 4096 * 5  # 5 MiB
    uploaded = await owner.json(
        "PUT",
        f"{files}/upload?path=/world/region.dat&size={len(payload)}",
        status=404,  # the parent directory does not exist yet: the node's 4xx, passed on
        data=io.BytesIO(payload),
    )
    assert uploaded["error"]["code"] == "not_found"
    await owner.json("POST", f"{files}/directory", status=201, json={"path": "/world"})
    entry = await owner.json(
        "PUT",
        f"{files}/upload?path=/world/region.dat&size={len(payload)}",
        data=io.BytesIO(payload),
    )
    assert entry["size"] == len(payload)

    response = await owner.request("GET", f"{files}/contents?path=/world/region.dat")
    assert response.status == 200
    assert await response.read() == payload

    await owner.json("PUT", f"{files}/contents?path=/server.properties", data=b"motd=hello\n")
    listing = await owner.json("GET", f"{files}/list?path=/")
    assert {e["name"] for e in listing["entries"]} >= {"world", "server.properties"}

    refused = await owner.request("GET", f"{files}/list?path=/../../etc")
    assert refused.status == 400

    await owner.json("POST", f"{files}/delete", status=204, json={"paths": ["/world"]})
    trail = await stack.admin.json(
        "GET", f"/api/v1/audit?target_id={server_id}&action=server.files.&per_page=50"
    )
    assert [e["action"] for e in reversed(trail["data"])] == [
        "server.files.mkdir",
        "server.files.upload",
        "server.files.download",
        "server.files.write",
        "server.files.delete",
    ]


async def test_backups_through_the_control_plane(stack: Stack) -> None:
    server_id, owner = await stack.owned_server("keeper@example.org")
    files = f"/api/v1/servers/{server_id}/files"
    backups = f"/api/v1/servers/{server_id}/backups"
    await owner.json("PUT", f"{files}/contents?path=/world.dat", data=b"the original world\n")

    first = await owner.json("POST", backups, status=202, json={"name": "before"})
    done = await wait_for_backup(owner, f"{backups}/{first['id']}")
    assert done["status"] == "completed", done

    download = await owner.request("GET", f"{backups}/{first['id']}/download")
    assert download.status == 200
    downloaded = await download.read()
    with tarfile.open(fileobj=io.BytesIO(downloaded), mode="r:gz") as archive:
        names = [m.name.lstrip("./") for m in archive.getmembers()]
        assert "world.dat" in names
    # What the listing says is what the user gets; the node's encrypted copy is named apart.
    listed = (await owner.json("GET", backups))["data"][0]
    for shown in (done, listed):
        assert shown["size_bytes"] == len(downloaded)
        assert shown["sha256"] == hashlib.sha256(downloaded).hexdigest()
        assert shown["stored_bytes"] > len(downloaded)  # chunk nonces and tags

    await owner.json("PUT", f"{files}/contents?path=/world.dat", data=b"griefed\n")
    await owner.json("POST", f"{backups}/{first['id']}/restore", status=202)
    deadline = time.monotonic() + 30
    while True:
        restored = await owner.request("GET", f"{files}/contents?path=/world.dat")
        if restored.status == 200 and await restored.read() == b"the original world\n":
            break
        assert time.monotonic() < deadline, "the restore never brought the file back"
        await asyncio.sleep(0.3)

    # A locked backup is never deleted, neither by hand nor by retention (limit 2 here).
    await owner.json("PATCH", f"{backups}/{first['id']}", json={"locked": True})
    await owner.json("DELETE", f"{backups}/{first['id']}", status=409)
    second = await owner.json("POST", backups, status=202, json={"name": "second"})
    await wait_for_backup(owner, f"{backups}/{second['id']}")
    third = await owner.json("POST", backups, status=202, json={"name": "third"})
    await wait_for_backup(owner, f"{backups}/{third['id']}")
    names = [b["name"] for b in (await owner.json("GET", backups))["data"]]
    assert names == ["before", "third"]  # the oldest unlocked one made room
    created = await stack.admin.json("GET", "/api/v1/audit?action=server.backup.created")
    made_room = next(e for e in created["data"] if e["details"]["backup"] == third["id"])
    assert made_room["details"]["removed"] == [second["id"]]
    await owner.json("PATCH", f"{backups}/{first['id']}", json={"locked": False})
    await owner.json("DELETE", f"{backups}/{first['id']}", status=204)


def game_env(server_id: str) -> list[str]:
    """The game container's environment, as ``docker inspect`` shows it."""
    found = docker_cli(
        "inspect", "-f", "{{json .Config.Env}}", game_container_name(uuid.UUID(server_id))
    )
    assert found.returncode == 0, found.stderr
    env: list[str] = json.loads(found.stdout)
    return env


async def test_startup_changes_reach_the_node_and_admin_reinstalls(stack: Stack) -> None:
    await stack.add_ports(1)
    blueprint = await stack.admin.json(
        "POST",
        "/api/v1/blueprints",
        status=201,
        json={
            "name": "fake game with an installer",
            "images": [{"name": "default", "image": "stellar-test/fake-game:latest"}],
            "startup": "/usr/local/bin/fake-game --motd {{MOTD}}",
            "stop": {"type": "command", "value": "stop"},
            "install": {
                "image": "stellar-test/fake-game:latest",
                "script": "echo installed >> /home/container/install.log",
            },
            "variables": [
                {
                    "env": "MOTD",
                    "name": "Message of the day",
                    "default": "hello",
                    "user_editable": True,
                    "regex": "^[A-Za-z0-9 ]{1,40}$",
                }
            ],
        },
    )
    owner_id = await stack.panel.create_user("tinkerer@example.org")
    created = await stack.admin.json(
        "POST",
        "/api/v1/servers",
        status=201,
        json={**stack.server_body(owner_id), "blueprint_id": blueprint["id"]},
    )
    server_id = created["id"]
    stack.servers.append(server_id)
    assert created["state"] == "installing"
    await wait_for_state(stack.admin, server_id, "offline")
    owner = await stack.panel.browser()
    await owner.login("tinkerer@example.org")
    power = f"/api/v1/servers/{server_id}/power"
    await owner.json("POST", power, status=202, json={"action": "start"})
    await wait_for_state(owner, server_id, "running")
    assert "MOTD=hello" in game_env(server_id)

    # The owner changes a user-editable variable while the game runs: the node stores the
    # new spec, and the game gets it at its restart.
    changed = await owner.json(
        "PATCH", f"/api/v1/servers/{server_id}/startup", json={"variables": {"MOTD": "good day"}}
    )
    # One argument, even with a space: values never add arguments.
    assert changed["command"][-2:] == ["--motd", "good day"]
    assert "MOTD=hello" in game_env(server_id)
    await owner.json("POST", power, status=202, json={"action": "restart"})
    deadline = time.monotonic() + 30
    while "MOTD=good day" not in game_env(server_id):
        assert time.monotonic() < deadline, "the restart never brought the new variable"
        await asyncio.sleep(0.3)
    await wait_for_state(owner, server_id, "running")

    # Reinstall: refused while the game runs (the node's 409), then run again once stopped.
    reinstall = f"/api/v1/servers/{server_id}/reinstall"
    await owner.json("POST", reinstall, status=409)
    await owner.json("POST", power, status=202, json={"action": "stop"})
    await wait_for_state(owner, server_id, "offline")
    answer = await stack.admin.json("POST", reinstall, status=202)
    assert answer["state"] == "installing"
    await wait_for_state(stack.admin, server_id, "offline")
    install_log = await owner.request(
        "GET", f"/api/v1/servers/{server_id}/files/contents?path=/install.log"
    )
    assert install_log.status == 200
    assert await install_log.read() == b"installed\ninstalled\n"
    assert "MOTD=good day" in game_env(server_id)

    trail = await stack.admin.json(
        "GET", f"/api/v1/audit?target_type=server&target_id={server_id}&per_page=100"
    )
    actions = [e["action"] for e in reversed(trail["data"])]
    assert actions.index("server.startup.updated") < actions.index("server.reinstalled")
    # The node's install event for the reinstall reached the control plane's audit trail.
    assert "server.install.finished" in actions[actions.index("server.reinstalled") :]


async def greeting_on(port: int) -> bytes:
    """What the fake game answers on ``port`` (127.0.0.1), or b"" if nothing does."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 3)
    except OSError:
        return b""
    try:
        return await asyncio.wait_for(reader.readline(), 3)
    finally:
        writer.close()


async def test_a_new_main_port_reaches_the_game_at_its_restart(stack: Stack) -> None:
    """The owner of a server with two ports makes the other one main (allocations.update):
    the node takes the spec while the game runs, and after the restart the game is told
    the new SERVER_PORT and answers on it."""
    low, high = sorted(await stack.add_ports(2))
    owner_id = await stack.panel.create_user("host@example.org")
    created = await stack.admin.json(
        "POST", "/api/v1/servers", status=201, json=stack.server_body(owner_id)
    )
    server_id = created["id"]
    stack.servers.append(server_id)
    await stack.give_port(server_id, high)
    owner = await stack.panel.browser()
    await owner.login("host@example.org")
    power = f"/api/v1/servers/{server_id}/power"
    ports = f"/api/v1/servers/{server_id}/allocations"
    listed = (await owner.json("GET", ports))["data"]
    assert [(p["port"], p["primary"]) for p in listed] == [(low, True), (high, False)]
    await owner.json("POST", power, status=202, json={"action": "start"})
    await wait_for_state(owner, server_id, "running")
    assert f"SERVER_PORT={low}" in game_env(server_id)
    assert await greeting_on(low) == b"fake-game here\n"

    made = await owner.json("PATCH", f"{ports}/{listed[1]['id']}", json={"primary": True})
    assert made == {**listed[1], "primary": True}
    assert f"SERVER_PORT={low}" in game_env(server_id)  # the running game keeps its port
    await owner.json("POST", power, status=202, json={"action": "restart"})
    deadline = time.monotonic() + 30
    while f"SERVER_PORT={high}" not in game_env(server_id):
        assert time.monotonic() < deadline, "the restart never brought the new main port"
        await asyncio.sleep(0.3)
    await wait_for_state(owner, server_id, "running")
    deadline = time.monotonic() + 15
    while await greeting_on(high) != b"fake-game here\n":
        assert time.monotonic() < deadline, "the game does not answer on its new main port"
        await asyncio.sleep(0.3)
    assert [(p["port"], p["primary"]) for p in (await owner.json("GET", ports))["data"]] == [
        (high, True),
        (low, False),
    ]
    await owner.json("POST", power, status=202, json={"action": "stop"})
    await wait_for_state(owner, server_id, "offline")
