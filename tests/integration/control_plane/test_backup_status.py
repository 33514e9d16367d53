"""A backup's status is what its node says — once the node has it. Against a real agent."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from control_plane.keys import NODES
from tests.integration.control_plane.stack import Stack, wait_for_backup

pytestmark = pytest.mark.docker


async def test_a_listing_while_the_node_is_told_does_not_fail_the_new_backup(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The record is written, then the node is told. A listing in between (the panel polls
    while any backup runs) asked the node, which did not know the backup yet, and marked it
    failed ("the node has no such backup", audited, alerted): the backup then completed on
    the node but stayed failed here — never downloadable or restorable, and the first one
    retention deletes."""
    server_id, owner = await stack.owned_server("lister@example.org")
    backups = f"/api/v1/servers/{server_id}/backups"
    nodes = stack.panel.server.app[NODES]
    told = nodes.create_backup
    reached, go_on = asyncio.Event(), asyncio.Event()

    async def slow_to_reach_the_node(*args: Any, **kwargs: Any) -> Any:
        reached.set()
        await go_on.wait()
        return await told(*args, **kwargs)

    monkeypatch.setattr(nodes, "create_backup", slow_to_reach_the_node)
    creating = asyncio.create_task(owner.json("POST", backups, status=202, json={"name": "b"}))
    await asyncio.wait_for(reached.wait(), 10)

    listed = await owner.json("GET", backups)
    assert [(b["name"], b["status"]) for b in listed["data"]] == [("b", "running")]
    go_on.set()
    made = await creating
    done = await wait_for_backup(owner, f"{backups}/{made['id']}")
    assert done["status"] == "completed", done
    trail = await stack.admin.json("GET", "/api/v1/audit?action=server.backup.failed")
    assert trail["data"] == []
