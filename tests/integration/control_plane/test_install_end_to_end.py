"""A failing install through the whole system: control plane, a real agent, real Docker.

The blueprint's script prints a line, waits for the test, prints a "secret" and an error
and exits 3. The owner watches it on the console through the control plane (``install
output`` frames, live and replayed), then ``GET /api/v1/servers/{id}`` shows the server
``install_failed`` with the exit code, the reason and the last lines. Those lines are the
script's own output: a sub-user who may read the console sees them, one who may not sees
the outcome only, and the audit trail keeps the outcome without them.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import pytest

from tests.integration.control_plane.stack import Stack, wait_for_state
from tests.integration.control_plane.test_blueprint_end_to_end import blueprint, server_of
from tests.support.panel import Browser

pytestmark = [pytest.mark.docker, pytest.mark.timeout(120)]
SECRET = "licence-key-5f2a91"
SCRIPT = (
    'echo "downloading the game"; '
    "while [ ! -e /home/container/release ]; do sleep 0.1; done; "
    f'echo "using {SECRET}"; sleep 0.3; '
    'echo "error: the download failed" >&2; exit 3'
)


async def install_frames(socket: aiohttp.ClientWebSocketResponse, until: str) -> list[str]:
    """The ``install output`` lines the socket gets, up to one containing ``until``."""
    lines: list[str] = []
    async with asyncio.timeout(30):
        while True:
            frame = json.loads((await socket.receive()).data)
            if frame.get("event") == "install output":
                lines.append(frame["args"][0])
                if until in frame["args"][0]:
                    return lines


async def sub_user(stack: Stack, owner: Browser, server_id: str, email: str, *grants: str) -> Any:
    await stack.panel.create_user(email)
    await owner.json(
        "POST",
        f"/api/v1/servers/{server_id}/users",
        status=201,
        json={"email": email, "permissions": list(grants)},
    )
    browser = await stack.panel.browser()
    await browser.login(email)
    return browser


async def test_a_failed_install_reaches_the_user_with_its_exit_code_reason_and_last_lines(
    stack: Stack,
) -> None:
    blueprint_id = await blueprint(
        stack, install={"image": "stellar-test/fake-game:latest", "script": SCRIPT}
    )
    server_id, owner = await server_of(stack, blueprint_id, "installer@example.org")
    path = f"/api/v1/servers/{server_id}"
    during = await owner.json("GET", path)
    assert during["install"]["state"] == "installing"

    async with owner.client.ws_connect(f"{path}/console") as console:
        # Connected mid-install: the line printed so far is replayed, the rest comes live.
        assert await install_frames(console, "downloading") == ["downloading the game"]
        (stack.volume(server_id) / "release").touch()
        live = await install_frames(console, "install failed")
    assert live == [
        f"using {SECRET}",
        "error: the download failed",
        "[stellar] install failed: the install script exited with code 3",
    ]

    await wait_for_state(owner, server_id, "install_failed")
    # It stays failed: the node's later "offline" does not hide it.
    await asyncio.sleep(1)
    server = await owner.json("GET", path)
    assert server["state"] == "install_failed"
    install = server["install"]
    assert install["state"] == "install_failed"
    assert install["exit_code"] == 3
    assert install["reason"] == "the install script exited with code 3"
    assert 0 < install["seconds"] < 60
    assert install["last_lines"] == [
        "downloading the game",
        f"using {SECRET}",
        "error: the download failed",
    ]

    # The script's lines need console.read, as the console does; the outcome does not.
    reader = await sub_user(stack, owner, server_id, "reader@example.org", "console.read")
    starter = await sub_user(stack, owner, server_id, "starter@example.org", "control.start")
    assert (await reader.json("GET", path))["install"] == install
    seen_by_starter = (await starter.json("GET", path))["install"]
    assert seen_by_starter == {**install, "last_lines": None}

    trail = await stack.admin.json(
        "GET", f"/api/v1/audit?target_type=server&target_id={server_id}&action=server.install."
    )
    finished = [e for e in trail["data"] if e["action"] == "server.install.finished"]
    assert len(finished) == 1
    assert finished[0]["details"]["exit_code"] == 3
    assert finished[0]["details"]["reason"] == "the install script exited with code 3"
    assert SECRET not in json.dumps(trail)

    # The node refuses to start it until it is reinstalled.
    refused = await owner.request("POST", f"{path}/power", json={"action": "start"})
    assert refused.status == 409


async def test_a_successful_install_is_shown_as_installed(stack: Stack) -> None:
    blueprint_id = await blueprint(
        stack,
        install={"image": "stellar-test/fake-game:latest", "script": "echo ready > marker"},
    )
    server_id, owner = await server_of(stack, blueprint_id, "fine@example.org")
    deadline = time.monotonic() + 30
    while (install := (await owner.json("GET", f"/api/v1/servers/{server_id}"))["install"])[
        "state"
    ] != "installed":
        assert time.monotonic() < deadline, install
        await asyncio.sleep(0.2)
    assert (install["exit_code"], install["reason"], install["last_lines"]) == (0, None, [])
    await wait_for_state(owner, server_id, "offline")
    assert (stack.volume(server_id) / "marker").read_text() == "ready\n"
