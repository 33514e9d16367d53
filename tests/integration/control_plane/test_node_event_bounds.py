"""What a node's event puts in the audit trail is what the event says, at a bounded size.

Crashes, finished backups, full disks, SFTP logins and installs are audited from the node's
event stream (and from there reach webhooks and alerts). The node is not trusted to keep them
small: a node that sends a megabyte in each event's text, or fields no event has, must not
make the control plane keep all of it in an audit trail that is never trimmed.
"""

from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from control_plane.db.models import AuditEntry, Node
from control_plane.db.session import transaction
from control_plane.keys import SESSIONS
from control_plane.nodes.events import NodeEventListener
from tests.support.world import World

MEGABYTE = "x" * 1024 * 1024


async def test_a_node_event_is_audited_with_its_own_fields_only_and_its_text_cut(
    engine: AsyncEngine, world: World
) -> None:
    app = world.panel.server.app
    server = world.ids["alice_server"]
    listener = NodeEventListener(app)
    async with transaction(app[SESSIONS]) as db:
        node = await db.get(Node, uuid.UUID(world.ids["node"]))
    assert node is not None
    junk = {"padding": MEGABYTE, "more": [MEGABYTE]}
    backup = str(uuid.uuid4())
    events = {
        "server.crashed": {
            "type": "crash",
            "exit_code": 1,
            "oom_killed": False,
            "restarting": False,
            "reason": MEGABYTE,
        },
        "server.backup.completed": {
            "type": "backup",
            "backup": backup,
            "status": "completed",
            "reason": MEGABYTE,
            "size_bytes": 10,
        },
        "server.disk.full": {"type": "disk_full", "used_bytes": 5, "limit_bytes": 5},
        "server.sftp.login": {
            "type": "sftp_login",
            "user": str(uuid.uuid4()),
            "success": True,
            "method": "password",
            "address": MEGABYTE,
        },
        "server.install.finished": {
            "type": "install",
            "success": False,
            "exit_code": 2,
            "duration_seconds": 1.0,
            "last_lines": ["no"],
            "reason": MEGABYTE,
        },
    }
    for event in events.values():
        await listener._apply(node, {**event, **junk, "server": server})

    async with transaction(app[SESSIONS]) as db:
        rows = {
            row.action: row.details
            for row in await db.scalars(
                select(AuditEntry).where(AuditEntry.action.in_(list(events)))
            )
        }
    assert set(rows) == set(events)
    for action, details in rows.items():
        size = len(json.dumps(details))
        assert size < 2048, f"{action}: {size} bytes audited"
        assert not {"padding", "more"} & set(details), action
    assert rows["server.crashed"]["exit_code"] == 1
    assert rows["server.crashed"]["reason"].startswith("xxx")
    assert rows["server.backup.completed"]["backup"] == backup
    assert rows["server.backup.completed"]["size_bytes"] == 10
    assert rows["server.disk.full"] == {"used_bytes": 5, "limit_bytes": 5}
    assert rows["server.install.finished"]["exit_code"] == 2


async def test_a_number_that_is_no_number_does_not_break_the_audit_trail(
    engine: AsyncEngine, world: World
) -> None:
    """NaN and Infinity parse in Python's JSON, not in PostgreSQL's or a browser's."""
    app = world.panel.server.app
    listener = NodeEventListener(app)
    async with transaction(app[SESSIONS]) as db:
        node = await db.get(Node, uuid.UUID(world.ids["node"]))
    assert node is not None
    server = world.ids["alice_server"]
    backup = {"type": "backup", "server": server, "backup": str(uuid.uuid4())}
    for line in (
        f'{{"type": "disk_full", "server": "{server}", "used_bytes": 1, "limit_bytes": 1}}',
        json.dumps({**backup, "status": "completed"})[:-1] + ', "duration_seconds": NaN}',
        json.dumps({**backup, "status": "failed"})[:-1] + ', "duration_seconds": -Infinity}',
    ):
        await listener._apply(node, json.loads(line))
    failures = {"type": "sftp_failures", "source": "203.0.113.9", "count": 3}
    line = json.dumps({**failures, "reasons": {"wrong_key": 3}})[:-1] + ', "seconds": NaN}'
    await listener._apply(node, json.loads(line))
    await listener._apply(node, {**failures, "reasons": {MEGABYTE: 3}, "seconds": 60})
    async with transaction(app[SESSIONS]) as db:
        rows = await db.scalars(
            select(AuditEntry).where(AuditEntry.action == "node.sftp.login_failures")
        )
        assert [(row.details["seconds"], row.details["reasons"]) for row in rows] == [
            (None, [{"reason": "wrong_key", "count": 3}])
        ]
    trail = await world.admin.request("GET", "/api/v1/audit", params={"target_id": server})
    assert trail.status == 200, await trail.text()
    rows = json.loads(await trail.text(), parse_constant=lambda name: pytest.fail(name))
    durations = {row["action"]: row["details"].get("duration_seconds") for row in rows["data"]}
    assert durations == {
        "server.disk.full": None,
        "server.backup.completed": None,
        "server.backup.failed": None,
    }


async def test_an_event_that_is_not_one_is_not_audited(engine: AsyncEngine, world: World) -> None:
    app = world.panel.server.app
    listener = NodeEventListener(app)
    async with transaction(app[SESSIONS]) as db:
        node = await db.get(Node, uuid.UUID(world.ids["node"]))
    assert node is not None
    server = world.ids["alice_server"]
    for event in (
        {"type": "crash", "server": server, "payload": MEGABYTE},
        {"type": "disk_full", "server": server, "used_bytes": "lots"},
        {"type": "backup", "server": server, "status": "completed"},
        {"type": "sftp_login", "server": server, "success": True},
    ):
        await listener._apply(node, event)
    async with transaction(app[SESSIONS]) as db:
        audited = list(
            await db.scalars(select(AuditEntry.action).where(AuditEntry.action.like("server.%")))
        )
    assert audited == []


async def test_failed_sftp_logins_keep_their_count_by_reason(
    engine: AsyncEngine, world: World
) -> None:
    """The reason ``wrong_password`` names a password; its count is no secret (the audit
    trail's redaction of keys that name one blanked it: password guessing went uncounted)."""
    app = world.panel.server.app
    listener = NodeEventListener(app)
    async with transaction(app[SESSIONS]) as db:
        node = await db.get(Node, uuid.UUID(world.ids["node"]))
    assert node is not None
    reasons = {"wrong_password": 3, "wrong_key": 1, "unknown_account": 2}
    event = {"type": "sftp_failures", "source": "203.0.113.9", "count": 6, "seconds": 60}
    await listener._apply(node, {**event, "reasons": reasons})

    trail = await world.admin.json(
        "GET", "/api/v1/audit", params={"action": "node.sftp.login_failures"}
    )

    assert [row["details"]["reasons"] for row in trail["data"]] == [
        [
            {"reason": "unknown_account", "count": 2},
            {"reason": "wrong_key", "count": 1},
            {"reason": "wrong_password", "count": 3},
        ]
    ]
