"""Every event of the console WebSocket, for every scope set and role, through a real agent.

The console is a second transport to the same actions as HTTP (commands, power): each
message is authorised by the same decision (scopes, permission node, server) and recorded
in the audit trail like its HTTP twin, and a refusal is an ``error`` event and an audited
denial, never a silent drop or a forwarded action.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp
import pytest
from sqlalchemy import func, select, update

from control_plane.db.engine import session_factory
from control_plane.db.models import AuditEntry, Session
from control_plane.db.session import transaction
from control_plane.keys import ENGINE
from control_plane.nodes import console as console_proxy
from node_agent.docker.hardening import game_container_name
from tests.integration.control_plane.conftest import AUTH_SECRET, UNLIMITED
from tests.integration.control_plane.stack import (
    Stack,
    read_until,
    wait_for_state,
)
from tests.support.containers import docker_cli
from tests.support.panel import Browser

pytestmark = pytest.mark.docker

Frame = dict[str, Any]
# What the contract says each event needs: (scope, permission node).
NEEDS: dict[str, tuple[str, str]] = {
    "send logs": ("read", "console.read"),
    "send stats": ("read", "stats.read"),
    "send command": ("write", "console.write"),
    "set state": ("write", "control.{}"),
}


@dataclass(frozen=True)
class Role:
    name: str
    holder: Literal["owner", "admin", "helper"]
    # None: the role's browser session (cookie); else an API key with these scopes.
    scopes: tuple[str, ...] | None

    def may(self, event: str, argument: str | None) -> bool:
        scope, permission = NEEDS[event]
        scopes = ("read", "write") if self.scopes is None else self.scopes
        if scope not in scopes and not (scope == "read" and "write" in scopes):
            return False
        # The helper is a sub-user holding console.read only.
        return self.holder != "helper" or permission.format(argument) == "console.read"


ROLES = [
    Role("owner session", "owner", None),
    Role("owner read key", "owner", ("read",)),
    Role("owner write key", "owner", ("write",)),
    Role("admin read+admin key", "admin", ("read", "admin")),
    Role("admin write+admin key", "admin", ("write", "admin")),
    Role("sub-user session", "helper", None),
    Role("sub-user read+write key", "helper", ("read", "write")),
]
# (event, argument): "set state start" on a running game changes nothing, so the walk can let
# it through without disturbing the game; the other power actions are proven below, refused
# and let through.
PROBES: list[tuple[str, str | None]] = [
    ("send logs", None),
    ("send stats", None),
    ("send command", "say"),
    ("set state", "start"),
    ("set state", "stop"),
    ("set state", "restart"),
    ("set state", "kill"),
]


async def next_frame(
    socket: aiohttp.ClientWebSocketResponse, want: Callable[[Frame], bool], label: str = ""
) -> Frame:
    """The first error event or frame ``want`` accepts, skipping everything else."""
    seen: list[Frame] = []
    try:
        async with asyncio.timeout(15):
            while True:
                message = await socket.receive()
                assert message.type == aiohttp.WSMsgType.TEXT, f"socket ended: {message}"
                frame: Frame = json.loads(message.data)
                if frame["event"] == "error" or want(frame):
                    return frame
                seen.append(frame)
    except TimeoutError:
        pytest.fail(f"{label}: no answer; skipped {seen}")


def evidence(event: str, marker: str) -> Callable[[Frame], bool]:
    """How the node's answer to a let-through event looks."""
    if event == "send logs":
        return lambda f: f["event"] == "console output" and "fake-game started" in str(f["args"])
    if event == "send stats" or event == "set state":
        # A start of the running game changes nothing: the stats asked for after it (the
        # socket's messages are taken one after the other) show it was taken without error.
        return lambda f: f["event"] == "stats"
    if event == "send command":
        return lambda f: f["event"] == "console output" and marker in str(f["args"])
    raise AssertionError(f"no evidence for {event}")


@dataclass
class Scene:
    stack: Stack
    server_id: str
    owner: Browser
    helper: Browser

    async def browser_for(self, role: Role) -> Browser:
        holder = {"owner": self.owner, "admin": self.stack.admin, "helper": self.helper}[
            role.holder
        ]
        if role.scopes is None:
            return holder
        created = await holder.json(
            "POST",
            "/api/v1/account/api-keys",
            status=201,
            json={"name": role.name, "scopes": list(role.scopes)},
        )
        bot = await self.stack.panel.browser()
        bot.api_key = created["key"]
        return bot

    async def trail(self, action: str) -> list[dict[str, Any]]:
        page = await self.stack.admin.json("GET", f"/api/v1/audit?action={action}&per_page=100")
        return list(page["data"])

    def started_at(self) -> str:
        inspected = docker_cli(
            "inspect", "-f", "{{.State.StartedAt}}", game_container_name(uuid.UUID(self.server_id))
        )
        assert inspected.returncode == 0, inspected.stderr
        return inspected.stdout.strip()


@pytest.fixture
async def scene(stack: Stack) -> Scene:
    server_id, owner = await stack.owned_server("owner@example.org")
    await stack.panel.create_user("helper@example.org")
    await owner.json(
        "POST",
        f"/api/v1/servers/{server_id}/users",
        status=201,
        json={"email": "helper@example.org", "permissions": ["console.read"]},
    )
    helper = await stack.panel.browser()
    await helper.login("helper@example.org")
    await owner.json(
        "POST", f"/api/v1/servers/{server_id}/power", status=202, json={"action": "start"}
    )
    await wait_for_state(owner, server_id, "running")
    return Scene(stack, server_id, owner, helper)


async def test_every_console_event_is_authorised_and_audited_for_every_role(scene: Scene) -> None:
    started = scene.started_at()
    expected_denials = expected_commands = expected_starts = 0
    for role in ROLES:
        browser = await scene.browser_for(role)
        console = f"/api/v1/servers/{scene.server_id}/console"
        async with browser.client.ws_connect(
            console,
            headers={"Authorization": f"Bearer {browser.api_key}"} if browser.api_key else None,
        ) as socket:
            for event, argument in PROBES:
                if event == "set state" and argument != "start" and role.may(event, argument):
                    continue  # would stop the game; let through in the test below
                marker = f"m{secrets.token_hex(4)}"
                args = (
                    [f"say {marker}"] if event == "send command" else [argument] if argument else []
                )
                await socket.send_json({"event": event, "args": args})
                if event == "set state" and role.may(event, argument):
                    await socket.send_json({"event": "send stats", "args": []})
                frame = await next_frame(
                    socket, evidence(event, marker), f"{role.name}: {event} {argument}"
                )
                label = f"{role.name}: {event} {argument or ''} -> {frame}"
                if role.may(event, argument):
                    assert frame["event"] != "error", label
                    expected_commands += event == "send command"
                    expected_starts += event == "set state"
                else:
                    assert frame["event"] == "error", label
                    assert "lack" in frame["args"][0], label
                    expected_denials += 1
    # Nothing refused reached the game: it was never stopped or restarted.
    assert scene.started_at() == started
    assert (await scene.owner.json("GET", f"/api/v1/servers/{scene.server_id}"))["state"] == (
        "running"
    )
    denials = [e for e in await scene.trail("auth.denied") if e["details"].get("event") is not None]
    assert len(denials) == expected_denials
    assert {e["details"]["server"] for e in denials} == {scene.server_id}
    assert len(await scene.trail("server.console.command")) == expected_commands
    assert len(await scene.trail("server.power.start")) == expected_starts + 1  # + the HTTP start


async def test_an_admins_key_without_the_admin_scope_cannot_open_anothers_console(
    scene: Scene,
) -> None:
    bot = await scene.browser_for(Role("plain admin key", "admin", ("read", "write")))
    response = await bot.request("GET", f"/api/v1/servers/{scene.server_id}/console")
    assert response.status == 404


async def test_a_read_key_cannot_restart_over_the_socket_and_a_write_key_can(
    scene: Scene,
) -> None:
    console = f"/api/v1/servers/{scene.server_id}/console"
    started = scene.started_at()
    reader = await scene.browser_for(Role("reader", "owner", ("read",)))
    async with reader.client.ws_connect(
        console, headers={"Authorization": f"Bearer {reader.api_key}"}
    ) as socket:
        await socket.send_json({"event": "set state", "args": ["restart"]})
        frame = await next_frame(socket, lambda f: False)
        assert "'write' scope" in frame["args"][0]
        await socket.send_json({"event": "send command", "args": ["say from a read key"]})
        frame = await next_frame(socket, lambda f: False)
        assert "'write' scope" in frame["args"][0]
    await asyncio.sleep(2)
    assert scene.started_at() == started

    writer = await scene.browser_for(Role("writer", "owner", ("write",)))
    async with writer.client.ws_connect(
        console, headers={"Authorization": f"Bearer {writer.api_key}"}
    ) as socket:
        await socket.send_json({"event": "set state", "args": ["restart"]})
        stopping = await next_frame(socket, lambda f: f["args"] == ["stopping"])
        assert stopping["event"] == "status", stopping
        await next_frame(socket, lambda f: f["args"] == ["running"])
        await socket.send_json({"event": "send command", "args": ["say from a write key"]})
        await read_until(socket, "from a write key")
    assert scene.started_at() != started
    trail = await scene.stack.admin.json(
        "GET",
        f"/api/v1/audit?target_type=server&target_id={scene.server_id}&per_page=100",
    )
    actions = [e["action"] for e in reversed(trail["data"])]
    assert actions[-2:] == ["server.power.restart", "server.console.command"]
    denied = await scene.trail("auth.denied")
    assert [e["details"]["event"] for e in denied][:2] == ["send command", "set state"]


async def test_malformed_arguments_get_an_error_event_and_reach_nothing(scene: Scene) -> None:
    async with scene.owner.client.ws_connect(
        f"/api/v1/servers/{scene.server_id}/console"
    ) as socket:
        for message in (
            {"event": "set state", "args": ["explode"]},
            {"event": "send command", "args": ["say a\u0000b"]},
            {"event": "send command", "args": []},
            {"event": "auth", "args": ["forged"]},
            {"event": "send command", "args": ["x" * 2000]},
        ):
            await socket.send_json(message)
            frame = await next_frame(socket, lambda f: False)
            assert frame["event"] == "error", message
        await socket.send_str("[" * 2000 + "]" * 2000)  # deeper than the JSON parser goes
        frame = await next_frame(socket, lambda f: False)
        assert frame["event"] == "error"
    assert await scene.trail("server.console.command") == []


async def test_socket_actions_run_like_their_http_twins(scene: Scene) -> None:
    """A long non-ASCII command is one line the game gets whole, as over HTTP; a node's
    refusal comes back as an error event, and only what the node did is recorded."""
    console = f"/api/v1/servers/{scene.server_id}/console"
    marker = "é" * 1000  # 1000 characters, 2000 bytes: more than the agent's socket takes escaped
    async with scene.owner.client.ws_connect(console) as socket:
        await socket.send_json({"event": "send command", "args": [f"say {marker}"]})
        echoed = await next_frame(socket, lambda f: marker in str(f["args"]), "echo")
        assert echoed["event"] == "console output", echoed
        await socket.send_json({"event": "set state", "args": ["stop"]})
        await next_frame(socket, lambda f: f["args"] == ["offline"])
        await socket.send_json({"event": "send command", "args": ["say into the void"]})
        refused = await next_frame(socket, lambda f: False)
        assert refused["event"] == "error"
        assert "lack" not in refused["args"][0]  # the node's refusal: the game is not running
    commands = await scene.trail("server.console.command")
    assert [e["details"]["command"] for e in commands] == [f"say {marker}"[:200]]


POWER_LIMITED = {
    "STELLAR_AUTH_SECRET": AUTH_SECRET,
    "STELLAR_BCRYPT_COST": "10",
    "STELLAR_RATE_LIMITS": UNLIMITED.replace("power=1000000/60", "power=3/60"),
}


@pytest.mark.parametrize("stack_environment", [POWER_LIMITED])
async def test_the_socket_and_http_share_the_power_rate_limit(stack: Stack) -> None:
    server_id, owner = await stack.owned_server("owner@example.org")
    power = f"/api/v1/servers/{server_id}/power"
    for _ in range(3):
        await owner.json("POST", power, status=202, json={"action": "kill"})
    async with owner.client.ws_connect(f"/api/v1/servers/{server_id}/console") as socket:
        await socket.send_json({"event": "set state", "args": ["start"]})
        refused = await next_frame(socket, lambda f: False)
        assert "too many requests" in refused["args"][0]
    assert (await owner.json("GET", f"/api/v1/servers/{server_id}"))["state"] == "offline"


async def test_an_open_console_does_not_keep_an_idle_session_alive(
    scene: Scene, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(console_proxy, "RECHECK_SECONDS", 0.3)
    engine = scene.stack.panel.server.app[ENGINE]
    async with scene.owner.client.ws_connect(
        f"/api/v1/servers/{scene.server_id}/console"
    ) as socket:
        await socket.receive_json()  # open and relaying
        long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=121)
        owner = (await scene.owner.json("GET", f"/api/v1/servers/{scene.server_id}"))["owner_id"]
        async with transaction(session_factory(engine)) as db:
            # The owner's session only: the administrator cleans up after the test.
            await db.execute(
                update(Session)
                .where(Session.user_id == uuid.UUID(owner))
                .values(last_seen_at=long_ago)
            )
        message = await socket.receive(timeout=10)
        while message.type == aiohttp.WSMsgType.TEXT:
            message = await socket.receive(timeout=10)
        assert socket.close_code == console_proxy.CLOSE_PERMISSIONS_CHANGED
    await scene.owner.json("GET", "/api/v1/auth/session", status=401)


FLOODER = "203.0.113.50"
API_LIMITED = {
    "STELLAR_AUTH_SECRET": AUTH_SECRET,
    "STELLAR_BCRYPT_COST": "10",
    "STELLAR_RATE_LIMITS": UNLIMITED.replace("api=1000000/60", "api=300/600"),
    # The flooding client is named by the proxy in front (the test's loopback peer).
    "STELLAR_TRUSTED_PROXIES": "127.0.0.1",
}


@pytest.mark.parametrize("stack_environment", [API_LIMITED])
async def test_a_console_flood_is_held_to_the_api_rate_limit_like_its_http_twin(
    scene: Scene,
) -> None:
    """Every refused or performed message writes an audit row (and, now, a delivery to each
    audit webhook): a socket must not write them faster than HTTP requests could."""
    console = f"/api/v1/servers/{scene.server_id}/console"
    flood = 400
    async with scene.helper.client.ws_connect(
        console, headers={"X-Forwarded-For": FLOODER}
    ) as socket:
        for n in range(flood):
            await socket.send_json({"event": "send command", "args": [f"say {n}"]})
        answers = [await next_frame(socket, lambda f: False) for _ in range(flood)]
    limited = [a for a in answers if "too many requests" in a["args"][0]]
    assert limited, answers[-1]
    engine = scene.stack.panel.server.app[ENGINE]
    async with transaction(session_factory(engine)) as db:
        denied = await db.scalar(
            select(func.count())
            .select_from(AuditEntry)
            .where(AuditEntry.action == "auth.denied", AuditEntry.ip == FLOODER)
        )
    assert denied is not None
    assert denied <= 320  # 300, and one more every 2 s the flood takes
    assert denied + len(limited) == flood
