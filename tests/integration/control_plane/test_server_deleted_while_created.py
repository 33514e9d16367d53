"""A server deleted while its node is still creating it (a slow image pull, say) must not
stay on the node without a record: the control plane's deletion found nothing on the node
yet and removed the record, then the node finished the create. That server's volume, game
container and installer were left on the node for good, unreachable through any route (no
record to delete it by), its disk counted nowhere, its ports handed to the next server."""

from __future__ import annotations

import asyncio
from typing import Any

import aiodocker
import pytest
from sqlalchemy import select

from control_plane.db.models import Server
from control_plane.nodes.client import NodeClient
from node_agent.docker.hardening import SERVER_LABEL
from shared.errors import UpstreamNoAnswer
from tests.integration.control_plane.stack import Stack

pytestmark = pytest.mark.docker


async def test_a_server_deleted_during_its_create_leaves_nothing_on_the_node(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    await stack.add_ports(1)
    owner_id = await stack.panel.create_user("racing@example.org")
    release = asyncio.Event()
    real_create = NodeClient.create_server

    async def slow_create(self: NodeClient, *args: Any, **kwargs: Any) -> Any:
        # The create is on its way to the node (an image being pulled there) meanwhile.
        await release.wait()
        return await real_create(self, *args, **kwargs)

    monkeypatch.setattr(NodeClient, "create_server", slow_create)
    creating = asyncio.create_task(
        stack.admin.request("POST", "/api/v1/servers", json=stack.server_body(owner_id))
    )
    server_id = None
    for _ in range(200):
        async with stack.panel.db() as db:
            server_id = await db.scalar(select(Server.id))
        if server_id is not None:
            break
        await asyncio.sleep(0.05)
    assert server_id is not None, "the create never recorded the server"

    deleted = await stack.admin.request("DELETE", f"/api/v1/servers/{server_id}")
    release.set()
    created = await creating

    assert deleted.status == 204
    assert created.status == 404, await created.text()
    async with stack.panel.db() as db:
        assert await db.get(Server, server_id) is None
    # Nothing of it stays on the node: no volume, no container, no record.
    assert not stack.volume(str(server_id)).exists()
    async with aiodocker.Docker() as docker:
        left = await docker.containers.list(
            all=True, filters={"label": [f"{SERVER_LABEL}={server_id}"]}
        )
    assert left == []
    assert not any(stack.agent.data_dir.rglob(f"*{server_id}*"))


async def test_a_create_whose_answer_never_came_is_undone_on_the_node(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The node took longer than our timeout (an image pull) or the connection broke after
    it had the request: the record goes, so the node's copy must go too."""
    await stack.add_ports(1)
    owner_id = await stack.panel.create_user("timedout@example.org")
    real_create = NodeClient.create_server
    made: list[str] = []

    async def answer_lost(self: NodeClient, node: Any, spec: Any, **kwargs: Any) -> Any:
        await real_create(self, node, spec, **kwargs)
        made.append(str(spec.uuid))
        raise UpstreamNoAnswer("node 'node-1' did not answer in time")

    monkeypatch.setattr(NodeClient, "create_server", answer_lost)
    answer = await stack.admin.request("POST", "/api/v1/servers", json=stack.server_body(owner_id))

    assert answer.status == 503, await answer.text()
    [server_id] = made
    async with stack.panel.db() as db:
        assert await db.scalar(select(Server.id)) is None
    assert not stack.volume(server_id).exists()
    async with aiodocker.Docker() as docker:
        left = await docker.containers.list(
            all=True, filters={"label": [f"{SERVER_LABEL}={server_id}"]}
        )
    assert left == []
