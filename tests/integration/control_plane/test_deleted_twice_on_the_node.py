"""The deletions that go to the node first, sent twice at the same moment against a real
agent: a backup and a server. One request deletes and audits; the other is told it is gone
(404) — never two 204s and two audit entries (test_deleted_twice.py walks the rest)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import func, select

from control_plane.db.models import AuditEntry
from tests.integration.control_plane.stack import Stack, wait_for_backup
from tests.support.held import requests_held
from tests.support.panel import Browser

pytestmark = pytest.mark.docker


async def _audited(stack: Stack, action: str) -> int:
    async with stack.panel.db() as db:
        count = await db.scalar(
            select(func.count()).select_from(AuditEntry).where(AuditEntry.action == action)
        )
        return int(count or 0)


async def _twice(
    browser: Browser, path: str, database_url: str, table: str, row_id: str
) -> list[int]:
    """DELETE ``path`` twice, both held at the row (PostgreSQL) until both wait there: both
    have read it and asked the node before either deletes the record."""
    lock = f"SELECT 1 FROM {table} WHERE id = $1 FOR UPDATE"
    async with requests_held(database_url, lock, uuid.UUID(row_id)) as held_up:
        calls = [asyncio.create_task(browser.request("DELETE", path)) for _ in range(2)]
        await held_up(2)
    return sorted(answer.status for answer in await asyncio.gather(*calls))


async def test_a_backup_and_a_server_deleted_twice_at_once(stack: Stack, database_url: str) -> None:
    server_id, owner = await stack.owned_server("twice@example.org")
    backups = f"/api/v1/servers/{server_id}/backups"
    made = await owner.json("POST", backups, status=202, json={"name": "once"})
    assert (await wait_for_backup(owner, f"{backups}/{made['id']}"))["status"] == "completed"

    path = f"{backups}/{made['id']}"
    assert await _twice(owner, path, database_url, "backups", made["id"]) == [204, 404]
    assert await _audited(stack, "server.backup.deleted") == 1
    await owner.json("GET", path, status=404)

    path = f"/api/v1/servers/{server_id}"
    assert await _twice(stack.admin, path, database_url, "servers", server_id) == [204, 404]
    assert await _audited(stack, "server.deleted") == 1
    stack.servers.remove(server_id)
    await stack.admin.json("GET", path, status=404)
