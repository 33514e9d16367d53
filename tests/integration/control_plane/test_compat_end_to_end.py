"""The Pterodactyl-compatible API against a real agent and real Docker, as a billing module
and a bot drive it: create a customer and a server (WHMCS, Paymenter, Blesta read the
fields asserted here), then the customer's client key powers it and types on its console."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import pytest
from sqlalchemy import select

from control_plane.db.models import AuditEntry
from tests.integration.control_plane.stack import Stack
from tests.integration.control_plane.test_blueprint_end_to_end import blueprint_body
from tests.support.compat import MEDIA_TYPE, pterodactyl_key
from tests.support.panel import Browser

pytestmark = pytest.mark.docker
PASSWORD = "customer password 123"


def server_request(user: int, egg: int, **placement: Any) -> dict[str, Any]:
    return {
        "name": "billing server",
        "user": user,
        "egg": egg,
        "docker_image": "stellar-test/fake-game:latest",
        "startup": "java -jar server.jar",
        "environment": {"UNKNOWN_TO_THE_EGG": "ignored"},
        "limits": {"memory": 512, "swap": 0, "disk": 1024, "io": 500, "cpu": 100},
        "feature_limits": {"databases": 2, "allocations": 3, "backups": 1},
        "external_id": "whmcs-service-7",
        **placement,
    }


async def current_state(client: Browser, identifier: str) -> str:
    body = await client.json("GET", f"/api/client/servers/{identifier}/resources")
    assert body["object"] == "stats"
    return str(body["attributes"]["current_state"])


async def wait_for(client: Browser, identifier: str, state: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    seen = ""
    while time.monotonic() < deadline:
        seen = await current_state(client, identifier)
        if seen == state:
            return
        await asyncio.sleep(0.2)
    pytest.fail(f"{identifier} stayed {seen!r}, never {state!r}")


async def test_a_billing_module_and_a_bot_run_a_server_through_the_compatible_api(
    stack: Stack,
) -> None:
    app = await pterodactyl_key(stack.panel, stack.admin, "application")
    app_headers = {"Accept": MEDIA_TYPE}
    ports = await stack.add_ports(3)
    nodes = await app.json("GET", "/api/application/nodes?include=allocations")
    node = nodes["data"][0]["attributes"]
    by_port = {
        a["attributes"]["port"]: a["attributes"]["id"]
        for a in node["relationships"]["allocations"]["data"]
    }
    customer = await app.json(
        "POST",
        "/api/application/users",
        status=201,
        json={
            "email": "customer@example.org",
            "username": "customer",
            "first_name": "Cus",
            "last_name": "Tomer",
            "password": PASSWORD,
        },
        headers=app_headers,
    )
    user = customer["attributes"]["id"]
    eggs = await app.json("GET", "/api/application/nests/1/eggs")
    egg = eggs["data"][0]["attributes"]["id"]

    invalid = await app.json(
        "POST", "/api/application/servers", status=422, json={"name": "x", "user": user}
    )
    assert {e["meta"]["source_field"] for e in invalid["errors"]} >= {"egg", "limits"}
    nowhere = await app.json(
        "POST",
        "/api/application/servers",
        status=400,
        json=server_request(user, egg, deploy={"locations": [999], "dedicated_ip": False}),
    )
    # WHMCS reads a 400 on create as "no node available".
    assert nowhere["errors"][0]["code"] == "DisplayException"

    created = await app.json(
        "POST",
        "/api/application/servers",
        status=201,
        json=server_request(
            user,
            egg,
            allocation={"default": by_port[ports[0]], "additional": [by_port[ports[1]]]},
        ),
    )
    assert created["object"] == "server"
    server = created["attributes"]
    stack.servers.append(server["uuid"])
    # Paymenter reads the ports of a new server from its relationships.
    allocations = server["relationships"]["allocations"]["data"]
    assert sorted((a["attributes"]["ip"], a["attributes"]["port"]) for a in allocations) == sorted(
        ("127.0.0.1", p) for p in ports[:2]
    )
    assert isinstance(server["id"], int)
    assert re.fullmatch(r"[0-9a-f]{8}", server["identifier"])
    assert server["identifier"] == server["uuid"].replace("-", "")[:8]
    assert server["limits"]["io"] == 500
    assert server["feature_limits"] == {"databases": 2, "allocations": 3, "backups": 1}
    assert server["container"]["startup_command"] == "java -jar server.jar"
    assert (server["user"], server["egg"], server["nest"]) == (user, egg, 1)
    assert server["external_id"] == "whmcs-service-7"
    again = await app.json("GET", "/api/application/servers/external/whmcs-service-7")
    assert again["attributes"]["id"] == server["id"]
    taken = await app.json(
        "POST",
        "/api/application/servers",
        status=422,
        json=server_request(user, egg, allocation={"default": by_port[ports[2]]}),
    )
    assert taken["errors"][0]["meta"] == {"source_field": "external_id", "rule": "unique"}
    listed = await app.json("GET", "/api/application/servers?filter[name]=billing")
    assert [s["attributes"]["id"] for s in listed["data"]] == [server["id"]]

    # The customer makes a client key and drives the server as a bot would.
    owner = await stack.panel.browser()
    await owner.login("customer@example.org", PASSWORD)
    bot = await pterodactyl_key(stack.panel, owner, "client")
    mine = await bot.json("GET", "/api/client", headers=app_headers)
    assert [s["attributes"]["identifier"] for s in mine["data"]] == [server["identifier"]]
    identifier = server["identifier"]
    detail = await bot.json("GET", f"/api/client/servers/{identifier}")
    assert detail["meta"] == {"is_server_owner": True, "user_permissions": ["*"]}
    assert detail["attributes"]["internal_id"] == server["id"]
    assert await current_state(bot, identifier) == "offline"  # Blesta reads current_state
    offline = await bot.json(
        "POST", f"/api/client/servers/{identifier}/command", status=502, json={"command": "hi"}
    )
    assert offline["errors"][0]["status"] == "502"
    await bot.json(
        "POST", f"/api/client/servers/{identifier}/power", status=204, json={"signal": "start"}
    )
    await wait_for(bot, identifier, "running")
    await bot.json(
        "POST", f"/api/client/servers/{identifier}/command", status=204, json={"command": "hi"}
    )
    resources = await bot.json("GET", f"/api/client/servers/{identifier}/resources")
    assert resources["attributes"]["resources"]["memory_bytes"] > 0
    await bot.json(
        "POST", f"/api/client/servers/{identifier}/power", status=204, json={"signal": "kill"}
    )
    await wait_for(bot, identifier, "offline")

    number = server["id"]
    details = await app.json(
        "PATCH",
        f"/api/application/servers/{number}/details",
        json={"name": "renamed", "user": user, "external_id": "whmcs-service-8"},
    )
    assert details["attributes"]["name"] == "renamed"
    assert details["attributes"]["external_id"] == "whmcs-service-8"
    startup = await app.json(
        "PATCH",
        f"/api/application/servers/{number}/startup",
        json={"startup": "other", "environment": {}, "egg": egg, "image": None},
    )
    assert startup["attributes"]["container"]["startup_command"] == "other"
    build = {
        "allocation": server["allocation"],  # the main port stays
        "memory": 768,
        "swap": 0,
        "disk": 2048,
        "io": 700,
        "cpu": 150,
        "threads": None,
        "feature_limits": {"databases": 0, "allocations": 5, "backups": 2},
    }
    upgraded = await app.json("PATCH", f"/api/application/servers/{number}/build", json=build)
    limits = upgraded["attributes"]["limits"]
    assert (limits["memory"], limits["disk"], limits["cpu"], limits["io"]) == (768, 2048, 150, 700)
    assert upgraded["attributes"]["feature_limits"]["backups"] == 2
    disk = await bot.json("GET", f"/api/client/servers/{identifier}")
    assert disk["attributes"]["limits"]["disk"] == 2048
    too_big = await app.json(
        "PATCH",
        f"/api/application/servers/{number}/build",
        status=422,
        json={**build, "memory": 10**9},
    )
    assert too_big["errors"][0]["meta"]["source_field"] == "limits.memory"
    moved = await app.json(
        "PATCH",
        f"/api/application/servers/{number}/build",
        status=422,
        json={**build, "add_allocations": [by_port[ports[2]]]},
    )
    assert moved["errors"][0]["meta"]["source_field"] == "add_allocations"
    await app.json("POST", f"/api/application/servers/{number}/suspend", status=204)
    suspended = await app.json("GET", f"/api/application/servers/{number}")
    assert suspended["attributes"]["status"] == "suspended"
    assert suspended["attributes"]["suspended"] is True
    await bot.json(
        "POST", f"/api/client/servers/{identifier}/power", status=409, json={"signal": "start"}
    )
    await app.json("POST", f"/api/application/servers/{number}/unsuspend", status=204)
    await app.json("POST", f"/api/application/servers/{number}/reinstall", status=204)
    await app.json("DELETE", f"/api/application/servers/{number}", status=204)
    stack.servers.remove(server["uuid"])
    await app.json("GET", f"/api/application/servers/{number}", status=404)
    await bot.json("GET", f"/api/client/servers/{identifier}", status=404)


async def test_deploy_places_a_server_in_a_location_with_room(stack: Stack) -> None:
    app = await pterodactyl_key(stack.panel, stack.admin, "application")
    await stack.add_ports(1)
    owner = await stack.panel.create_user("deployed@example.org")
    users = await app.json("GET", "/api/application/users?filter[email]=deployed@")
    assert users["data"][0]["attributes"]["uuid"] == owner
    user = users["data"][0]["attributes"]["id"]
    location = (await app.json("GET", "/api/application/locations"))["data"][0]["attributes"]
    egg = (await app.json("GET", "/api/application/nests/1/eggs"))["data"][0]["attributes"]["id"]
    body = server_request(
        user, egg, deploy={"locations": [location["id"]], "dedicated_ip": False, "port_range": []}
    )
    body["start_on_completion"] = True
    created = await app.json("POST", "/api/application/servers", status=201, json=body)
    stack.servers.append(created["attributes"]["uuid"])
    assert created["attributes"]["relationships"]["allocations"]["data"]
    # No install step: it was started at once.
    bot = await pterodactyl_key(stack.panel, stack.admin, "client", ["read", "write", "admin"])
    await wait_for(bot, created["attributes"]["identifier"], "running")


async def test_a_bot_manages_files_through_the_client_api(stack: Stack) -> None:
    server_id, owner = await stack.owned_server("files@example.org")
    bot = await pterodactyl_key(stack.panel, owner, "client")
    mine = await bot.json("GET", "/api/client")
    identifier = mine["data"][0]["attributes"]["identifier"]
    files = f"/api/client/servers/{identifier}/files"
    await bot.json("POST", f"{files}/create-folder", status=204, json={"root": "/", "name": "cfg"})
    written = await bot.request(
        "POST", f"{files}/write?file=/cfg/motd.txt", data=b"hello from a bot\n"
    )
    assert written.status == 204
    listed = await bot.json("GET", f"{files}/list?directory=/cfg")
    assert listed["object"] == "list"
    entry = listed["data"][0]
    assert entry["object"] == "file_object"
    assert entry["attributes"]["name"] == "motd.txt"
    assert entry["attributes"]["is_file"] is True
    assert entry["attributes"]["size"] == 17
    assert entry["attributes"]["mode"].startswith("-rw")
    contents = await bot.request("GET", f"{files}/contents?file=/cfg/motd.txt")
    assert contents.status == 200
    assert await contents.read() == b"hello from a bot\n"
    await bot.json(
        "PUT",
        f"{files}/rename",
        status=204,
        json={"root": "/cfg", "files": [{"from": "motd.txt", "to": "welcome.txt"}]},
    )
    renamed = await bot.json("GET", f"{files}/list?directory=/cfg")
    assert [e["attributes"]["name"] for e in renamed["data"]] == ["welcome.txt"]
    # The node's confinement is ours: no way out of the volume.
    escape = await bot.request("GET", f"{files}/contents?file=/../../etc/passwd")
    assert escape.status in (400, 404, 422)
    await bot.json("POST", f"{files}/delete", status=204, json={"root": "/", "files": ["cfg"]})
    empty = await bot.json("GET", f"{files}/list?directory=/")
    assert "cfg" not in [e["attributes"]["name"] for e in empty["data"]]
    backups = f"/api/client/servers/{identifier}/backups"
    made = await bot.json("POST", backups, json={"name": "before the update"})
    assert made["object"] == "backup"
    backup = made["attributes"]["uuid"]
    deadline = time.monotonic() + 60
    while not (await bot.json("GET", f"{backups}/{backup}"))["attributes"]["completed_at"]:
        assert time.monotonic() < deadline, "the backup never finished"
        await asyncio.sleep(0.3)
    done = await bot.json("GET", f"{backups}/{backup}")
    assert done["attributes"]["is_successful"] is True
    assert done["attributes"]["checksum"].startswith("sha256:")
    await bot.json("DELETE", f"{backups}/{backup}", status=204)
    assert (await bot.json("GET", backups))["data"] == []
    trail = await stack.admin.json("GET", f"/api/v1/audit?target_id={server_id}")
    assert {"server.files.write", "server.files.rename", "server.files.delete"} <= {
        entry["action"] for entry in trail["data"]
    }


async def test_a_backup_made_locked_through_the_client_api_stays_locked(stack: Stack) -> None:
    """Pterodactyl's ``is_locked`` on create was accepted and dropped: the bot's "keep this
    one" backup was unlocked, so the next backup at the server's limit deleted it. It is kept
    from a caller who may delete backups, and left out (as Pterodactyl does) from one who may
    not (who could otherwise pin backups the owner's rotation can never remove)."""
    server_id, owner = await stack.owned_server("locker@example.org")
    bot = await pterodactyl_key(stack.panel, owner, "client")
    identifier = (await bot.json("GET", "/api/client"))["data"][0]["attributes"]["identifier"]
    backups = f"/api/client/servers/{identifier}/backups"
    made = await bot.json("POST", backups, json={"name": "keep me", "is_locked": True})
    assert made["attributes"]["is_locked"] is True, made
    uuid_ = made["attributes"]["uuid"]
    deadline = time.monotonic() + 60
    while not (await bot.json("GET", f"{backups}/{uuid_}"))["attributes"]["completed_at"]:
        assert time.monotonic() < deadline, "the backup never finished"
        await asyncio.sleep(0.3)
    assert (await bot.json("GET", f"{backups}/{uuid_}"))["attributes"]["is_locked"] is True
    refused = await bot.request("DELETE", f"{backups}/{uuid_}")
    assert refused.status == 400
    # Ours says the same, and asks for backups.delete when it is not held.
    native = f"/api/v1/servers/{server_id}/backups"
    assert (await owner.json("GET", f"{native}/{uuid_}"))["locked"] is True

    await stack.panel.create_user("helper@example.org")
    helper = await stack.panel.browser()
    await helper.login("helper@example.org")
    await owner.json(
        "POST",
        f"/api/v1/servers/{server_id}/users",
        status=201,
        json={"email": "helper@example.org", "permissions": ["backups.read", "backups.create"]},
    )
    refused_native = await helper.json("POST", native, status=403, json={"locked": True})
    assert "'backups.delete' permission" in refused_native["error"]["message"]
    helper_bot = await pterodactyl_key(stack.panel, helper, "client")
    theirs = await helper_bot.json("POST", backups, json={"name": "x", "is_locked": True})
    assert theirs["attributes"]["is_locked"] is False, theirs


async def test_start_on_completion_starts_the_server_once_its_first_install_succeeds(
    stack: Stack,
) -> None:
    """WHMCS and Paymenter create servers with ``start_on_completion``: an egg with an install
    step runs it, then the game starts by itself; a reinstall later leaves it offline."""
    body = blueprint_body(
        name="installs, then starts",
        install={"image": "stellar-test/fake-game:latest", "script": "echo fetched; sleep 1"},
    )
    await stack.admin.json("POST", "/api/v1/blueprints", status=201, json=body)
    app = await pterodactyl_key(stack.panel, stack.admin, "application")
    eggs = (await app.json("GET", "/api/application/nests/1/eggs"))["data"]
    egg = next(e["attributes"]["id"] for e in eggs if e["attributes"]["name"] == body["name"])
    await stack.add_ports(1)
    await stack.panel.create_user("installed@example.org")
    users = await app.json("GET", "/api/application/users?filter[email]=installed@")
    user = users["data"][0]["attributes"]["id"]
    location = (await app.json("GET", "/api/application/locations"))["data"][0]["attributes"]
    request = server_request(
        user, egg, deploy={"locations": [location["id"]], "dedicated_ip": False, "port_range": []}
    )
    request["external_id"] = "whmcs-service-installs"
    request["start_on_completion"] = True
    created = await app.json("POST", "/api/application/servers", status=201, json=request)
    stack.servers.append(created["attributes"]["uuid"])
    number, identifier = created["attributes"]["id"], created["attributes"]["identifier"]
    bot = await pterodactyl_key(stack.panel, stack.admin, "client", ["read", "write", "admin"])
    assert await current_state(bot, identifier) in {"starting", "offline"}  # installing
    await wait_for(bot, identifier, "running", timeout=60)
    async with stack.panel.db() as db:
        rows = await db.scalars(
            select(AuditEntry).where(
                AuditEntry.action == "server.power.start",
                AuditEntry.target_id == created["attributes"]["uuid"],
            )
        )
        started = [(row.actor_id, row.details) for row in rows]
    assert started == [(None, {"by": "start_on_completion"})]

    await bot.json(
        "POST", f"/api/client/servers/{identifier}/power", status=204, json={"signal": "kill"}
    )
    await wait_for(bot, identifier, "offline")
    await app.json("POST", f"/api/application/servers/{number}/reinstall", status=204)
    server = created["attributes"]["uuid"]
    owner = await stack.panel.browser()
    await owner.login("installed@example.org")
    async with asyncio.timeout(60):
        while (await owner.json("GET", f"/api/v1/servers/{server}"))["install"]["state"] != (
            "installed"
        ):
            await asyncio.sleep(0.2)
    await asyncio.sleep(2)  # a start would have been asked at once
    assert await current_state(bot, identifier) == "offline"
