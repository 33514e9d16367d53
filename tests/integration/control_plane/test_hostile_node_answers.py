"""A node's answers are the node's own, and no bigger than they can be.

A node is run by whoever rooted it (or by another operator): what it answers to our calls is
believed only as far as it speaks for itself. It cannot send the control plane elsewhere with
a redirect (the control plane would fetch an address inside its own network and hand the
answer to the node's user: a file download of the cloud's metadata service) — not with a
download, a listing or a WebSocket handshake. (An answer of any size: test_hostile_node.py.)
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpClient, AiohttpServer
from sqlalchemy.ext.asyncio import AsyncEngine

from control_plane.app import create_app
from control_plane.db.models import Node
from control_plane.db.session import transaction
from control_plane.errors import ApiError
from control_plane.keys import NODES, SESSIONS
from shared.node_endpoints import FILES_LIST, FILES_READ, NODE_EVENT_STREAM
from tests.integration.control_plane.conftest import signing_settings
from tests.support.panel import Panel
from tests.support.world import World, build_world

SECRET = b"metadata-service: role credentials AKIA-SECRET"
MIB = 1024 * 1024


@dataclass
class Internal:
    """A service only the control plane's network reaches (a metadata service, an admin UI)."""

    hits: list[str] = field(default_factory=list)

    def app(self) -> web.Application:
        async def anything(request: web.Request) -> web.Response:
            self.hits.append(f"{request.method} {request.path_qs}")
            listing = {"path": "/", "entries": [], "truncated": False}
            if request.path.endswith("/list"):
                return web.json_response(listing)
            return web.Response(body=SECRET)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", anything)
        return app


@dataclass
class HostileNode:
    """Answers file calls with a redirect to ``elsewhere``, or with an endless listing."""

    elsewhere: str = ""
    redirect_status: int = 302
    sent: int = 0

    def app(self) -> web.Application:
        async def redirect(request: web.Request) -> web.Response:
            target = self.elsewhere + request.path_qs
            if self.redirect_status == 302:
                raise web.HTTPFound(target)
            raise web.HTTPTemporaryRedirect(target)

        async def endless(request: web.Request) -> web.StreamResponse:
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            await response.prepare(request)
            entry = b'{"name":"a","path":"/a","type":"file","size":1,"mode":420,"mtime":0},'
            chunk = entry * (MIB // len(entry))
            await response.write(b'{"path":"/","truncated":false,"entries":[')
            try:
                while self.sent < 160 * MIB:  # the control plane should have stopped long ago
                    await response.write(chunk)
                    self.sent += len(chunk)
            except (ConnectionError, RuntimeError):
                return response
            await response.write(b"]}")
            return response

        app = web.Application()
        app.router.add_get(NODE_EVENT_STREAM.path, redirect)
        app.router.add_get(FILES_READ.path, redirect)
        app.router.add_get(FILES_LIST.path, endless if not self.elsewhere else redirect)
        return app


async def stack_with(
    node: HostileNode,
    database_url: str,
    tmp_path: Path,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
) -> World:
    settings = signing_settings(database_url, tmp_path, STELLAR_NODE_TIMEOUT_SECONDS="20")
    panel = Panel(await aiohttp_server(create_app(settings, background_jobs=False)), aiohttp_client)
    world = await build_world(panel)
    served = await aiohttp_server(node.app())
    await world.admin.json(
        "PATCH",
        f"/api/v1/nodes/{world.ids['node']}",
        json={"url": f"http://127.0.0.1:{served.port}"},
    )
    return world


async def test_a_node_cannot_redirect_the_control_plane_to_an_address_of_its_network(
    engine: AsyncEngine,
    database_url: str,
    tmp_path: Path,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
) -> None:
    internal = Internal()
    inside = await aiohttp_server(internal.app())
    node = HostileNode(elsewhere=f"http://127.0.0.1:{inside.port}")
    world = await stack_with(node, database_url, tmp_path, aiohttp_server, aiohttp_client)
    files = f"/api/v1/servers/{world.ids['alice_server']}/files"
    for status in (302, 307):
        node.redirect_status = status
        # A streamed answer (a download) and a JSON one (a listing).
        download = await world.alice.request("GET", f"{files}/contents", params={"path": "x"})
        body = await download.read()
        assert SECRET not in body
        assert download.status == 502, (download.status, body[:200])
        listing = await world.alice.request("GET", f"{files}/list", params={"path": "/"})
        assert listing.status == 502, (listing.status, await listing.text())
        # A WebSocket (the node's event stream, a console) is not sent elsewhere either.
        app = world.panel.server.app
        async with transaction(app[SESSIONS]) as db:
            stored = await db.get(Node, uuid.UUID(world.ids["node"]))
        assert stored is not None
        with pytest.raises(ApiError):
            await app[NODES].open_events(stored)
    assert internal.hits == []
