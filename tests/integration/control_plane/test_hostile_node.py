"""A node that answers with a redirect is not followed (a compromised game host as the attacker).

Whoever holds a node (root on a game host) answers the control plane's signed calls as they
like. A redirect must not turn the control plane into their HTTP client inside its own
network: followed, a file download pointed at ``http://169.254.169.254/…`` (a cloud's
metadata service: the host's credentials) or any service only the control plane can reach
came back to the node's owner as the file's bytes, and a power action was sent on, body and
all, to wherever the node said. A redirect is the node's failure (502), and nothing is sent
past it.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp
from aiohttp import web
from pytest_aiohttp import AiohttpClient, AiohttpServer
from sqlalchemy.ext.asyncio import AsyncEngine

from control_plane.app import create_app
from control_plane.nodes.transport import MAX_NODE_ANSWER_BYTES
from shared.node_endpoints import (
    FILES_LIST,
    FILES_READ,
    SERVER_CONSOLE,
    SERVER_POWER,
    SERVER_UPDATE,
)
from tests.integration.control_plane.conftest import signing_settings
from tests.support.panel import Panel
from tests.support.world import World, build_world

SECRET = b"AKIA-INSTANCE-ROLE-CREDENTIALS"


class Internal:
    """A service only the control plane can reach (a metadata service, an admin API)."""

    def __init__(self) -> None:
        self.hits: list[tuple[str, str, bytes]] = []

    def app(self) -> web.Application:
        async def anything(request: web.Request) -> web.StreamResponse:
            self.hits.append((request.method, request.path, await request.read()))
            socket = web.WebSocketResponse()
            if socket.can_prepare(request).ok:  # an internal WebSocket service
                await socket.prepare(request)
                await socket.send_json({"event": "console output", "args": [SECRET.decode()]})
                await socket.receive()
                return socket
            return web.Response(body=SECRET)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", anything)
        return app


def hostile_node(internal: str) -> web.Application:
    """Answers every call with a redirect into the control plane's network."""

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPTemporaryRedirect(f"{internal}/latest/meta-data/iam/security-credentials")

    app = web.Application()
    for endpoint in (FILES_READ, SERVER_POWER, SERVER_UPDATE, SERVER_CONSOLE):
        app.router.add_route(endpoint.method, endpoint.path, redirect)
    return app


async def _world(
    database_url: str,
    tmp_path: Path,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
) -> tuple[World, Internal]:
    settings = signing_settings(database_url, tmp_path)
    panel = Panel(await aiohttp_server(create_app(settings, background_jobs=False)), aiohttp_client)
    world = await build_world(panel)
    internal = Internal()
    inside = await aiohttp_server(internal.app())
    node = await aiohttp_server(hostile_node(f"http://127.0.0.1:{inside.port}"))
    await world.admin.json(
        "PATCH",
        f"/api/v1/nodes/{world.ids['node']}",
        json={"url": f"http://127.0.0.1:{node.port}"},
    )
    return world, internal


async def test_a_redirect_from_a_node_is_not_followed(
    engine: AsyncEngine,
    database_url: str,
    tmp_path: Path,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
) -> None:
    world, internal = await _world(database_url, tmp_path, aiohttp_server, aiohttp_client)
    alices = world.ids["alice_server"]

    download = await world.alice.request(
        "GET", f"/api/v1/servers/{alices}/files/contents?path=/server.properties"
    )
    body = await download.read()
    assert SECRET not in body
    assert download.status == 502, (download.status, body[:200])

    power = await world.alice.request(
        "POST", f"/api/v1/servers/{alices}/power", json={"action": "start"}
    )
    assert power.status == 502, (power.status, await power.text())

    assert internal.hits == [], "the control plane followed the node's redirect"


async def test_a_redirected_console_handshake_is_not_followed(
    engine: AsyncEngine,
    database_url: str,
    tmp_path: Path,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
) -> None:
    world, internal = await _world(database_url, tmp_path, aiohttp_server, aiohttp_client)
    alices = world.ids["alice_server"]

    # Followed, the control plane relayed the node owner's console to whatever WebSocket
    # service the redirect named inside its network (a Docker API's attach, an admin
    # console), its frames to the user and the user's messages to it.
    seen: list[str] = []
    refused: int | None = None
    try:
        async with world.alice.client.ws_connect(f"/api/v1/servers/{alices}/console") as socket:
            for _ in range(3):
                try:
                    message = await socket.receive(timeout=3)
                except TimeoutError:
                    break
                if message.type != aiohttp.WSMsgType.TEXT:
                    break
                seen.append(str(message.data))
    except aiohttp.WSServerHandshakeError as err:
        refused = err.status
    assert refused in (502, 503), (refused, seen)
    assert not any(SECRET.decode() in frame for frame in seen), seen
    assert internal.hits == [], "the control plane followed the node's redirect"


async def test_an_endless_answer_from_a_node_is_not_read_whole(
    engine: AsyncEngine,
    database_url: str,
    tmp_path: Path,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
) -> None:
    # A node's answer was read whole into memory before it was looked at: a compromised node
    # answering the health poll (or any call) with gigabytes took down the replica, then
    # the next one to take the poll over. Only a bounded answer is read.
    world, _internal = await _world(database_url, tmp_path, aiohttp_server, aiohttp_client)
    sent = [0]

    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        chunk = b" " * (1024 * 1024)
        try:
            for _ in range(MAX_NODE_ANSWER_BYTES // len(chunk) * 3):
                await response.write(chunk)
                sent[0] += len(chunk)
        except (ConnectionError, RuntimeError):
            pass  # the control plane stopped reading
        return response

    node = web.Application()
    node.router.add_route(FILES_LIST.method, FILES_LIST.path, endless)
    served = await aiohttp_server(node)
    await world.admin.json(
        "PATCH",
        f"/api/v1/nodes/{world.ids['node']}",
        json={"url": f"http://127.0.0.1:{served.port}"},
    )
    alices = world.ids["alice_server"]
    listing = await world.alice.request("GET", f"/api/v1/servers/{alices}/files/list?path=/")
    assert listing.status == 502, await listing.text()
    assert sent[0] < 2 * MAX_NODE_ANSWER_BYTES, sent[0]
