"""The console token socket (Wings' dialect) against a real agent and game, and its attackers.

A client asks ``GET /api/v1/servers/{id}/console/token`` for a token, connects to the socket it
names, and authenticates in band; everything after is the console's (each event authorized
now, audited like its HTTP twin), framed as Wings frames it. Tokens here live 10 s, so the
``token expiring`` warning comes 5 s before the end and a test sees the whole life of one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import jwt
import pytest

from control_plane.api import console_socket
from control_plane.api.console import MAX_SOCKETS_PER_USER
from control_plane.nodes import console as console_proxy
from tests.integration.control_plane.conftest import AUTH_SECRET, UNLIMITED
from tests.integration.control_plane.stack import Stack, wait_for_state
from tests.support.compat import pterodactyl_key
from tests.support.panel import Browser

pytestmark = pytest.mark.docker

Frame = dict[str, Any]
TOKEN_SECONDS = 10


@pytest.fixture
def stack_environment() -> dict[str, str]:
    return {
        "STELLAR_AUTH_SECRET": AUTH_SECRET,
        "STELLAR_BCRYPT_COST": "10",
        "STELLAR_RATE_LIMITS": UNLIMITED,
        "STELLAR_NODE_HEALTH_INTERVAL_SECONDS": "2",
        "STELLAR_CONSOLE_TOKEN_SECONDS": str(TOKEN_SECONDS),
    }


async def key_client(stack: Stack, holder: Browser, scopes: list[str]) -> Browser:
    created = await holder.json(
        "POST", "/api/v1/account/api-keys", status=201, json={"name": "bot", "scopes": scopes}
    )
    bot = await stack.panel.browser()
    bot.api_key = created["key"]
    return bot


async def token_for(client: Browser, server_id: str) -> dict[str, Any]:
    token: dict[str, Any] = await client.json("GET", f"/api/v1/servers/{server_id}/console/token")
    return token


@asynccontextmanager
async def socket_of(
    stack: Stack, token: dict[str, Any] | None = None
) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
    """The socket, connected as a Wings client connects: no credential on the handshake."""
    anonymous = await stack.panel.browser()
    path = console_socket.SOCKET_PATH
    if token is not None:
        assert token["socket"].endswith(path)
    async with anonymous.client.ws_connect(path) as socket:
        yield socket


async def next_frame(
    socket: aiohttp.ClientWebSocketResponse, want: Callable[[Frame], bool], timeout: float = 20
) -> Frame:
    """The first frame ``want`` accepts; fails on a close or a timeout."""
    seen: list[Frame] = []
    try:
        async with asyncio.timeout(timeout):
            while True:
                message = await socket.receive()
                assert message.type == aiohttp.WSMsgType.TEXT, f"ended: {message}; saw {seen}"
                frame: Frame = json.loads(message.data)
                if want(frame):
                    return frame
                seen.append(frame)
    except TimeoutError:
        pytest.fail(f"no such frame; saw {seen[-20:]}")


async def frames_for(socket: aiohttp.ClientWebSocketResponse, seconds: float) -> list[Frame]:
    """Every frame that arrives within ``seconds``."""
    frames: list[Frame] = []
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            while True:
                message = await socket.receive()
                assert message.type == aiohttp.WSMsgType.TEXT, message
                frames.append(json.loads(message.data))
    return frames


def event(name: str) -> Callable[[Frame], bool]:
    return lambda f: f["event"] == name


def output(text: str) -> Callable[[Frame], bool]:
    return lambda f: f["event"] == "console output" and text in str(f["args"])


async def authenticated(socket: aiohttp.ClientWebSocketResponse, token: str) -> None:
    await socket.send_json({"event": "auth", "args": [token]})
    await next_frame(socket, event("auth success"))


async def closed_with(socket: aiohttp.ClientWebSocketResponse, timeout: float = 20) -> Frame:
    """The ``jwt error`` frame the socket answered with before it closed."""
    frame = await next_frame(socket, event("jwt error"), timeout)
    message = await socket.receive(timeout=timeout)
    assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), message
    return frame


@pytest.fixture
async def running(stack: Stack) -> tuple[Stack, str, Browser]:
    server_id, owner = await stack.owned_server("owner@example.org")
    await owner.json(
        "POST", f"/api/v1/servers/{server_id}/power", status=202, json={"action": "start"}
    )
    await wait_for_state(owner, server_id, "running")
    return stack, server_id, owner


async def test_a_wings_client_reads_output_stats_and_commands_the_game(
    running: tuple[Stack, str, Browser],
) -> None:
    stack, server_id, owner = running
    bot = await key_client(stack, owner, ["read", "write"])
    token = await token_for(bot, server_id)
    assert token["socket"].startswith("ws://")

    async with socket_of(stack, token) as socket:
        await authenticated(socket, token["token"])
        status = await next_frame(socket, event("status"))
        assert status["args"] == ["running"]
        await next_frame(socket, output("fake-game started"))
        await socket.send_json({"event": "send command", "args": ["say hello wings"]})
        await next_frame(socket, output("hello wings"))
        # Pushed, as Wings pushes them: nobody asked.
        stats = await next_frame(socket, event("stats"))
        # Wings sends its stats as a JSON string, with its own names.
        [text] = stats["args"]
        figures = json.loads(text)
        assert set(figures) == {
            "memory_bytes", "memory_limit_bytes", "cpu_absolute", "network", "uptime",
            "state", "disk_bytes",
        }  # fmt: skip
        assert figures["state"] == "running"
        assert figures["memory_limit_bytes"] == 512 * 1024 * 1024
        assert figures["memory_bytes"] > 0
        assert set(figures["network"]) == {"rx_bytes", "tx_bytes"}
        assert figures["uptime"] > 0
        await socket.send_json({"event": "set state", "args": ["stop"]})
        stopping = await next_frame(socket, lambda f: f == {"event": "status", "args": ["offline"]})
        assert stopping
    trail = await stack.admin.json("GET", f"/api/v1/audit?target_id={server_id}&per_page=50")
    actions = [e["action"] for e in reversed(trail["data"])]
    assert actions[-3:] == ["server.console.opened", "server.console.command", "server.power.stop"]


async def test_the_token_is_renewed_on_the_same_socket_and_an_expired_one_stops_everything(
    running: tuple[Stack, str, Browser],
) -> None:
    stack, server_id, owner = running
    bot = await key_client(stack, owner, ["read", "write"])
    first = await token_for(bot, server_id)

    async with socket_of(stack, first) as socket:
        await authenticated(socket, first["token"])
        await next_frame(socket, event("token expiring"), timeout=TOKEN_SECONDS)
        renewed = await token_for(bot, server_id)
        await authenticated(socket, renewed["token"])
        # Past the first token's end: the socket lives on the second one.
        await asyncio.sleep(max(0.0, _epoch(first["expires_at"]) - time.time() + 1))
        await socket.send_json({"event": "send command", "args": ["say still here"]})
        await next_frame(socket, output("still here"))
        # Left to run out: "token expired", and nothing is done or relayed until a new auth.
        await next_frame(socket, event("token expired"), timeout=TOKEN_SECONDS + 2)
        await socket.send_json({"event": "send command", "args": ["say too late"]})
        await next_frame(socket, event("token expired"))
        await authenticated(socket, (await token_for(bot, server_id))["token"])
        await socket.send_json({"event": "send command", "args": ["say back again"]})
        await next_frame(socket, output("back again"))
    logs = await owner.json("GET", f"/api/v1/servers/{server_id}/logs")
    assert not any("too late" in line for line in logs["lines"])


def _epoch(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp()


async def test_a_read_only_key_watches_but_is_refused_power_and_commands(
    running: tuple[Stack, str, Browser],
) -> None:
    stack, server_id, owner = running
    reader = await key_client(stack, owner, ["read"])
    token = await token_for(reader, server_id)

    async with socket_of(stack, token) as socket:
        await authenticated(socket, token["token"])
        await next_frame(socket, output("fake-game started"))
        for probe in (["set state", "stop"], ["set state", "kill"], ["send command", "say no"]):
            await socket.send_json({"event": probe[0], "args": [probe[1]]})
            refused = await next_frame(socket, event("daemon error"))
            assert "scope" in refused["args"][0], refused
    await wait_for_state(owner, server_id, "running", timeout=2)
    denials = await stack.admin.json("GET", "/api/v1/audit?action=auth.denied&per_page=50")
    assert len(denials["data"]) == 3


async def test_forged_foreign_expired_and_stale_tokens_open_nothing(
    running: tuple[Stack, str, Browser], monkeypatch: pytest.MonkeyPatch
) -> None:
    stack, server_id, owner = running
    bot = await key_client(stack, owner, ["read", "write"])
    good = (await token_for(bot, server_id))["token"]
    claims = jwt.decode(good, options={"verify_signature": False})
    forged = {
        "another secret": jwt.encode(claims, b"x" * 32, algorithm="HS256"),
        "alg none": jwt.encode(claims, None, algorithm="none"),  # type: ignore[arg-type]
        "expired": jwt.encode(
            {**claims, "exp": int(time.time()) - 5},
            _console_key(),
            algorithm="HS256",
        ),
        "another audience": jwt.encode({**claims, "aud": "x"}, _console_key(), algorithm="HS256"),
        "garbage": "not-a-token-at-all-really",
    }
    for name, token in forged.items():
        async with socket_of(stack) as socket:
            await socket.send_json({"event": "auth", "args": [token]})
            refused = await closed_with(socket)
            want = "expired" if name == "expired" else "invalid"
            assert refused["args"] == [f"the token is {want}"], name

    # Anything but auth first, or nothing at all: closed.
    async with socket_of(stack) as socket:
        await socket.send_json({"event": "send command", "args": ["say sneaky"]})
        assert "authenticate first" in (await closed_with(socket))["args"][0]
    monkeypatch.setattr(console_socket, "AUTH_SECONDS", 0.5)
    async with socket_of(stack) as socket:
        assert "authenticate first" in (await closed_with(socket, timeout=5))["args"][0]

    # A token for another user's server: the stranger's socket opens nothing.
    other_id, other_owner = await stack.owned_server("other@example.org")
    foreign = (await token_for(other_owner, other_id))["token"]
    async with socket_of(stack) as socket:
        await authenticated(socket, good)
        await socket.send_json({"event": "auth", "args": [foreign]})
        assert (await next_frame(socket, event("jwt error")))["args"] == [
            "the token is for another server or user"
        ]
        await socket.send_json({"event": "send command", "args": ["say mine still"]})
        await next_frame(socket, output("mine still"))
    # The stranger cannot ask for a token for our server at all.
    await other_owner.json("GET", f"/api/v1/servers/{server_id}/console/token", status=404)

    # A token whose key was revoked since: refused at auth, and an open socket closes.
    key_id = await _key_id(owner)
    spare = (await token_for(bot, server_id))["token"]
    async with socket_of(stack) as socket:
        await authenticated(socket, spare)
        await owner.json("DELETE", f"/api/v1/account/api-keys/{key_id}", status=204)
        async with socket_of(stack) as second:
            await second.send_json({"event": "auth", "args": [spare]})
            refused = await closed_with(second)
            assert "no longer works" in refused["args"][0]
        message = await socket.receive(timeout=15)
        while message.type == aiohttp.WSMsgType.TEXT:
            message = await socket.receive(timeout=15)
        assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)


async def test_a_sub_user_loses_the_socket_with_the_permission(
    running: tuple[Stack, str, Browser],
) -> None:
    stack, server_id, owner = running
    await stack.panel.create_user("helper@example.org")
    grant = await owner.json(
        "POST",
        f"/api/v1/servers/{server_id}/users",
        status=201,
        json={"email": "helper@example.org", "permissions": ["console.read"]},
    )
    helper = await stack.panel.browser()
    await helper.login("helper@example.org")
    token = await token_for(helper, server_id)  # a browser session's token
    async with socket_of(stack, token) as socket:
        await authenticated(socket, token["token"])
        await socket.send_json({"event": "send command", "args": ["say not mine"]})
        assert "console.write" in (await next_frame(socket, event("daemon error")))["args"][0]
        # Without stats.read no stats are pushed (two pulses' worth of frames, none of them).
        frames = await frames_for(socket, 2 * console_proxy.PULSE_SECONDS + 1)
        assert not [f for f in frames if f["event"] == "stats"], frames
        await owner.json("DELETE", f"/api/v1/servers/{server_id}/users/{grant['id']}", status=204)
        message = await socket.receive(timeout=5)
        while message.type == aiohttp.WSMsgType.TEXT:
            message = await socket.receive(timeout=5)
        assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    async with socket_of(stack) as socket:
        await socket.send_json({"event": "auth", "args": [token["token"]]})
        assert (await closed_with(socket))["args"] == ["no such server"]


async def test_a_page_on_another_site_cannot_open_the_socket(
    running: tuple[Stack, str, Browser],
) -> None:
    stack, _server_id, _owner = running
    anonymous = await stack.panel.browser()
    response = await anonymous.client.get(
        console_socket.SOCKET_PATH,
        headers={
            "Origin": "https://evil.example",
            "Connection": "Upgrade",
            "Upgrade": "websocket",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        },
    )
    assert response.status == 403
    plain = await anonymous.client.get(console_socket.SOCKET_PATH)
    assert plain.status == 400
    assert "WebSocket" in (await plain.json())["error"]["message"]


def _console_key() -> bytes:
    from control_plane.security.console_tokens import _key

    return _key(AUTH_SECRET)


async def _key_id(owner: Browser) -> str:
    keys = await owner.json("GET", "/api/v1/account/api-keys")
    [key] = keys["data"]
    return str(key["id"])


async def test_a_pterodactyl_client_key_gets_its_socket_from_the_client_api(
    running: tuple[Stack, str, Browser],
) -> None:
    """``GET /api/client/servers/{identifier}/websocket`` as Pterodactyl answers it; a read-only
    client key watches, and is refused power and commands on the socket."""
    stack, server_id, owner = running
    identifier = server_id[:8]
    writer = await pterodactyl_key(stack.panel, owner, "client")
    reader = await pterodactyl_key(stack.panel, owner, "client", ["read"])
    answer = await writer.json("GET", f"/api/client/servers/{identifier}/websocket")
    assert set(answer) == {"data"}
    assert set(answer["data"]) == {"token", "socket"}
    async with socket_of(stack, answer["data"]) as socket:
        await authenticated(socket, answer["data"]["token"])
        await socket.send_json({"event": "send command", "args": ["say from a bot"]})
        await next_frame(socket, output("from a bot"))

    watching = (await reader.json("GET", f"/api/client/servers/{identifier}/websocket"))["data"]
    async with socket_of(stack, watching) as socket:
        await authenticated(socket, watching["token"])
        await next_frame(socket, event("stats"))  # pushed: a read key may read them
        await socket.send_json({"event": "set state", "args": ["stop"]})
        refused = await next_frame(socket, event("daemon error"))
        assert "scope" in refused["args"][0]
    await wait_for_state(owner, server_id, "running", timeout=2)
    # Our own console-token route is not the client key's: it keeps to the client API.
    await reader.json("GET", f"/api/v1/servers/{server_id}/console/token", status=403)


async def first_answer(socket: aiohttp.ClientWebSocketResponse, token: str) -> str:
    """What a socket gets for its ``auth``: ``auth success``, or the refusal's text."""
    await socket.send_json({"event": "auth", "args": [token]})
    while True:
        message = await socket.receive(timeout=20)
        if message.type != aiohttp.WSMsgType.TEXT:
            return f"closed: {message.type}"
        frame = json.loads(message.data)
        if frame["event"] == "auth success":
            return "auth success"
        if frame["event"] in ("jwt error", "daemon error"):
            return f"{frame['event']}: {frame['args']}"


async def test_sockets_opened_at_once_by_one_user_take_only_their_places_on_both_routes(
    stack: Stack,
) -> None:
    """The cap of consoles per user was counted before the node was asked and taken after,
    so ten sockets opened at once all passed it: one sub-user with console.read took every
    place the node keeps for the server (8), and the owner got the node's 429."""
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
    most = MAX_SOCKETS_PER_USER

    async with contextlib.AsyncExitStack() as sockets:
        opened = [await sockets.enter_async_context(socket_of(stack)) for _ in range(most + 6)]
        tokens = [(await token_for(helper, server_id))["token"] for _ in opened]
        answers = await asyncio.gather(*map(first_answer, opened, tokens))
        assert answers.count("auth success") == most, answers
        assert all("at most 4 consoles" in a for a in answers if a != "auth success"), answers
        async with socket_of(stack) as own:
            assert await first_answer(own, (await token_for(owner, server_id))["token"]) == (
                "auth success"
            )

    # The route with the credential on the handshake (an API key), the same.
    bot = await key_client(stack, helper, ["read"])
    path = f"/api/v1/servers/{server_id}/console"
    headers = {"Authorization": f"Bearer {bot.api_key}"}

    async def handshake() -> aiohttp.ClientWebSocketResponse | int:
        try:
            return await bot.client.ws_connect(path, headers=headers)
        except aiohttp.WSServerHandshakeError as err:
            return err.status

    results = await asyncio.gather(*(handshake() for _ in range(most + 6)))
    try:
        assert sorted(r if isinstance(r, int) else 101 for r in results) == [101] * most + [403] * 6
    finally:
        for result in results:
            if not isinstance(result, int):
                await result.close()
