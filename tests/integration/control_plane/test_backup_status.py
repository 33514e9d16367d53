"""A backup's status is what its node says — once the node has it. Against a real agent."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from yarl import URL

from control_plane.keys import NODES
from node_agent.backups.store import BACKUPS_DIR
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


class _DropsTheBackupAnswer:
    """The node client's HTTP session, except that the answer to a backup's creation is lost
    on the way back (the node took it; the connection broke before its answer arrived)."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self._session = session

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)

    def request(self, method: str, url: Any, **kwargs: Any) -> Any:
        if method == "POST" and URL(str(url)).path.endswith("/backups"):
            return self._lost(method, url, **kwargs)
        return self._session.request(method, url, **kwargs)

    @asynccontextmanager
    async def _lost(self, method: str, url: Any, **kwargs: Any) -> AsyncIterator[Any]:
        async with self._session.request(method, url, **kwargs) as response:
            await response.read()
        raise aiohttp.ServerDisconnectedError()
        yield  # an async generator (never reached)


async def test_a_backup_whose_answer_was_lost_is_not_recorded_failed(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The node took the backup, but its answer never arrived (a timeout, a dropped
    connection): the backup was recorded failed here while it completed on the node — never
    downloadable or restorable, and the first one retention deletes. Only an answer decides
    failure; without one, the node is asked again, as for any running backup."""
    server_id, owner = await stack.owned_server("lost@example.org")
    backups = f"/api/v1/servers/{server_id}/backups"
    nodes = stack.panel.server.app[NODES]
    monkeypatch.setattr(nodes, "_session", _DropsTheBackupAnswer(nodes._session))

    lost = await owner.json("POST", backups, status=503, json={"name": "b"})
    assert "node" in lost["error"]["message"], lost
    monkeypatch.undo()
    [made] = (await owner.json("GET", backups))["data"]
    done = await wait_for_backup(owner, f"{backups}/{made['id']}")
    assert done["status"] == "completed", done
    archives = stack.agent.data_dir / BACKUPS_DIR / server_id
    assert [p.name for p in archives.glob("*.stbk")] == [f"{made['id']}.stbk"]


async def test_deleting_a_server_deletes_its_backups_on_the_node(stack: Stack) -> None:
    """Deleting a server deleted its record, its backups' records and its backup key, but left
    the encrypted backups on the node: no one could fetch, restore or delete them any more,
    nor decrypt them (the key was gone), and each deleted server's backups (up to the limit
    times its disk) filled the node's disk for ever."""
    server_id, owner = await stack.owned_server("leaving@example.org")
    backups = f"/api/v1/servers/{server_id}/backups"
    for name in ("one", "two"):
        made = await owner.json("POST", backups, status=202, json={"name": name})
        assert (await wait_for_backup(owner, f"{backups}/{made['id']}"))["status"] == "completed"
    locked = (await owner.json("GET", backups))["data"][0]["id"]
    await owner.json("PATCH", f"{backups}/{locked}", json={"locked": True})
    archives = stack.agent.data_dir / BACKUPS_DIR / server_id
    assert len(list(archives.glob("*.stbk"))) == 2

    await stack.admin.json("DELETE", f"/api/v1/servers/{server_id}", status=204)
    stack.servers.remove(server_id)

    assert not archives.exists() or list(archives.iterdir()) == []
