"""A real third-party client drives the Pterodactyl-compatible API: nodeactyl (npm, pinned in
tests/clients/nodeactyl, installed by `make test`'s test-tools step), through its own code,
unmodified, against the real control plane and a real agent.

It creates a user and a server (its ServerBuilder, placed by ``deploy``), then with the
user's client key lists the server, starts it, waits for ``running``, types on its console,
reads its resource use, makes and lists a backup, kills it, and is refused a command while
it is offline. nodeactyl 3.3.0 has no file methods: files are covered by our own tests.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.integration.control_plane.stack import Stack
from tests.support.compat import pterodactyl_key

pytestmark = pytest.mark.docker
CLIENT_DIR = Path(__file__).resolve().parents[2] / "clients" / "nodeactyl"
PASSWORD = "nodeactyl user password"


async def nodeactyl(phase: str, environment: dict[str, str]) -> dict[str, Any]:
    """Run one phase of drive.js; its JSON outcome (the test fails on its error)."""
    node = shutil.which("node")
    assert node is not None, "node is missing: run `make test` (its test-tools step)"
    assert (CLIENT_DIR / "node_modules" / "nodeactyl").is_dir(), (
        "nodeactyl is not installed: deploy/dev/ensure-services.sh test-tools installs it"
    )
    process = await asyncio.create_subprocess_exec(
        node,
        "drive.js",
        phase,
        cwd=CLIENT_DIR,
        env={**os.environ, **environment},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(120):
        out, err = await process.communicate()
    lines = out.decode().strip().splitlines()
    assert lines, f"nodeactyl printed nothing: {err.decode()}"
    outcome: dict[str, Any] = json.loads(lines[-1])
    assert process.returncode == 0, f"nodeactyl {phase}: {outcome} {err.decode()[-2000:]}"
    return outcome


async def test_nodeactyl_creates_and_runs_a_server_through_the_compatible_api(
    stack: Stack,
) -> None:
    await stack.add_ports(1)
    app = await pterodactyl_key(stack.panel, stack.admin, "application")
    egg = (await app.json("GET", "/api/application/nests/1/eggs"))["data"][0]["attributes"]
    location = (await app.json("GET", "/api/application/locations"))["data"][0]["attributes"]
    url = str(stack.panel.server.make_url("/"))
    assert app.api_key is not None
    made = await nodeactyl(
        "application",
        {
            "PANEL_URL": url,
            "APPLICATION_KEY": app.api_key,
            "USER_EMAIL": "bot@example.org",
            "USER_PASSWORD": PASSWORD,
            "EGG_ID": str(egg["id"]),
            "LOCATION_ID": str(location["id"]),
        },
    )
    server = made["server"]
    stack.servers.append(server["uuid"])
    assert made["user"]["email"] == "bot@example.org"
    assert server["user"] == made["user"]["id"]
    assert server["egg"] == egg["id"]
    assert made["details"]["identifier"] == server["identifier"]
    assert server["relationships"]["allocations"]["data"][0]["attributes"]["ip"] == "127.0.0.1"

    owner = await stack.panel.browser()
    await owner.login("bot@example.org", PASSWORD)
    bot = await pterodactyl_key(stack.panel, owner, "client")
    assert bot.api_key is not None
    # The ServerBuilder asked for start_on_completion; nothing to install, so it started.
    ran = await nodeactyl("client", {"PANEL_URL": url, "CLIENT_KEY": bot.api_key})
    assert ran["identifiers"] == [server["identifier"]]
    assert ran["details"]["uuid"] == server["uuid"]
    assert ran["started"] is True
    assert ran["running"] == "running"
    assert ran["command"] is True or ran["command"] == ""
    assert ran["usages"]["current_state"] == "running"
    assert ran["usages"]["resources"]["memory_bytes"] > 0
    assert ran["backup"]["name"]
    assert ran["backup"]["uuid"] in [b["attributes"]["uuid"] for b in ran["backups"]]
    assert ran["stopped"] == "offline"
    assert ran["refused"] == 502
    trail = await stack.admin.json("GET", f"/api/v1/audit?target_id={server['uuid']}")
    actions = {entry["action"] for entry in trail["data"]}
    assert {"server.created", "server.power.start", "server.console.command"} <= actions
