"""Attacks on the delivery of SFTP access tables (docs/sftp.md, "versions"): an older table
delivered after a newer one must not bring back a removed key, and a push that fails while
the node stays up is delivered afterwards, ending the revoked session within seconds.
Real control plane, real agent, a real HTTP relay on loopback in front of the agent."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import paramiko
import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpServer

from control_plane.keys import NODES, SESSIONS
from control_plane.services import sftp_push
from shared.errors import Conflict
from tests.integration.control_plane.stack import Stack
from tests.integration.control_plane.test_sftp_end_to_end import (
    KEYS,
    add_key,
    ends_within,
    login,
    target_of,
)
from tests.integration.node_agent.sftp_client import UserKey

pytestmark = [pytest.mark.docker, pytest.mark.timeout(240)]
ACCESS_PATH = "/api/v1/sftp/access"


@dataclass
class Relay:
    """Forwards every request to the agent byte for byte, except that it answers 503 to the
    next ``refuse`` table pushes (the node itself stays up and keeps answering)."""

    agent_url: str
    http: aiohttp.ClientSession
    refuse: int = 0
    refused: int = 0
    delivered: list[int] = field(default_factory=list)  # statuses of pushes passed on

    async def handle(self, request: web.Request) -> web.StreamResponse:
        pushing = request.method == "PUT" and request.path == ACCESS_PATH
        if pushing and self.refuse > 0:
            self.refuse -= 1
            self.refused += 1
            return web.Response(status=503, text="relay: refused once")
        headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
        async with self.http.request(
            request.method,
            self.agent_url + request.path_qs,
            data=await request.read(),
            headers=headers,
        ) as answer:
            body = await answer.read()
            if pushing:
                self.delivered.append(answer.status)
            return web.Response(
                status=answer.status,
                body=body,
                content_type=answer.content_type if body else None,
            )


@pytest.fixture
async def relay(stack: Stack, aiohttp_server: AiohttpServer) -> AsyncIterator[Relay]:
    """The node's URL on the panel points at the relay while the test runs."""
    async with aiohttp.ClientSession() as http:
        relay = Relay(stack.agent.base_url, http)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", relay.handle)
        server = await aiohttp_server(app)
        url = f"http://127.0.0.1:{server.port}"
        await stack.admin.json("PATCH", f"/api/v1/nodes/{stack.node_id}", json={"url": url})
        yield relay
        await stack.admin.json(
            "PATCH", f"/api/v1/nodes/{stack.node_id}", json={"url": stack.agent.base_url}
        )


async def test_an_older_table_delivered_late_does_not_restore_a_removed_key(
    stack: Stack, tmp_path: Path
) -> None:
    server_id, owner = await stack.owned_server(f"vera-{uuid.uuid4().hex[:6]}@example.org")
    target = await target_of(stack, tmp_path)
    key = UserKey.make(tmp_path / "k")
    added = await add_key(owner, key)
    name = await login(owner, server_id)
    app = stack.panel.server.app
    node_id = uuid.UUID(stack.node_id)
    # A push prepared while the key was there, held back (a slow replica, a delayed packet).
    prepared = await sftp_push.next_table(app[SESSIONS], node_id)
    assert prepared is not None
    node, old = prepared
    assert key.public in old.model_dump_json()
    await owner.json("DELETE", f"{KEYS}/{added['id']}", status=204)
    # The removal's push (a newer version) reached the node: the key no longer logs in.
    with pytest.raises(paramiko.AuthenticationException):
        await asyncio.to_thread(target.ssh_client, name, key)
    # Now the old table arrives: refused, and the key stays out.
    with pytest.raises(Conflict, match="older"):
        await app[NODES].push_sftp_access(node, old)
    assert await sftp_push.deliver(app[NODES], node, old) is False
    stored = (stack.agent.data_dir / "sftp-access.json").read_text()
    assert key.public not in stored
    with pytest.raises(paramiko.AuthenticationException):
        await asyncio.to_thread(target.ssh_client, name, key)


async def test_a_push_lost_while_the_node_is_up_is_delivered_and_ends_the_session(
    stack: Stack, relay: Relay, tmp_path: Path
) -> None:
    server_id, owner = await stack.owned_server(f"walt-{uuid.uuid4().hex[:6]}@example.org")
    target = await target_of(stack, tmp_path)
    key = UserKey.make(tmp_path / "k")
    added = await add_key(owner, key)
    name = await login(owner, server_id)
    client = await asyncio.to_thread(target.ssh_client, name, key)
    try:
        relay.refuse = 1
        await owner.json("DELETE", f"{KEYS}/{added['id']}", status=204)
        assert relay.refused == 1  # the removal's own push was lost on the way
        waited = await ends_within(client, 10)  # health interval 2 s: the next poll re-pushes
    finally:
        client.close()
    assert 204 in relay.delivered
    node = await stack.admin.json("GET", f"/api/v1/nodes/{stack.node_id}")
    assert node["status"] == "online"  # the node never looked down
    with pytest.raises(paramiko.AuthenticationException):
        await asyncio.to_thread(target.ssh_client, name, key)
    assert waited < 10
