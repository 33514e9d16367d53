"""A deletion that reaches the agent while it is still creating the same server (its image
being pulled, its volume made) is not lost: the create is undone when it ends, and nothing of
the server stays on the node.

It used to answer 404 (not created yet), and the create then finished: the control plane had
taken the 404 as "already gone" and removed its record, so the server's volume, container and
installer stayed on the node for good, where no route could reach them.
"""

from __future__ import annotations

import asyncio
import uuid

import aiodocker
import pytest

from node_agent.docker.hardening import SERVER_LABEL
from tests.integration.node_agent.files_client import FilesClient
from tests.integration.node_agent.live_agent import LiveServers

pytestmark = pytest.mark.docker


async def test_a_deletion_during_the_create_undoes_it(
    servers: LiveServers, api: FilesClient, docker: aiodocker.Docker
) -> None:
    outcomes = []
    for step in range(16):
        spec = servers.spec()
        server_id = uuid.UUID(spec["uuid"])
        creating = asyncio.create_task(api.create(spec))
        await asyncio.sleep(step * 0.01)
        deleted = await api.delete(server_id)
        created = await creating
        outcome = (deleted.status, created.status)
        outcomes.append(outcome)

        left = await docker.containers.list(
            all=True, filters={"label": [f"{SERVER_LABEL}={server_id}"]}
        )
        there = (await api.read(server_id)).status == 200
        if outcome == (404, 201):
            # The deletion came before the create had begun: the create is the last word.
            made = (there, bool(left), servers.volume(server_id).exists())
            assert made == (True, True, True), step
        else:
            # After the create ended (201), or while it ran (the create undone, 404):
            # nothing of the server stays.
            assert outcome in {(204, 201), (204, 404)}, (step, outcome)
            assert (there, left, servers.volume(server_id).exists()) == (False, [], False)
    # Some deletions reached the agent while it was still making the server.
    assert (204, 404) in outcomes, outcomes
