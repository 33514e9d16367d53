"""Every deletion route sent twice at the same moment: one request deletes, the other is told
the object is gone (404) or was deleted meanwhile (409) — never a 500, never two successes,
never the deletion audited twice.

The walk enumerates the route table, so a deletion route added later is walked too. On
PostgreSQL both requests are held up at the row (a test transaction locks it) until both are
waiting, so both have read it before either deletes: the race every route must survive. On
SQLite writers take turns (``BEGIN IMMEDIATE``); the walk shows the later one gets its 404.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import func, select

from control_plane.api.registry import endpoints
from control_plane.api.routing import Access, Endpoint
from control_plane.db.models import (
    Allocation,
    ApiKey,
    AuditEntry,
    Blueprint,
    Invitation,
    Location,
    Node,
    OAuthIdentity,
    PasskeyCredential,
    Schedule,
    ScheduleTask,
    SshKey,
    Subuser,
    User,
    Webhook,
)
from control_plane.db.models import Session as SessionRow
from tests.integration.control_plane.test_route_walks import ALICE_OBJECT, concrete
from tests.support.held import Held, requests_held
from tests.support.world import DEAD_NODE_URL, World

# The object a route deletes, by the last parameter of its path.
MODEL_OF: dict[str, Any] = {
    "session_id": SessionRow,
    "passkey_id": PasskeyCredential,
    "key_id": ApiKey,
    "identity_id": OAuthIdentity,
    "ssh_key_id": SshKey,
    "location_id": Location,
    "allocation_id": Allocation,
    "subuser_id": Subuser,
    "invitation_id": Invitation,
    "account_webhook_id": Webhook,
    "webhook_id": Webhook,
    "panel_webhook_id": Webhook,
    "schedule_id": Schedule,
    "task_id": ScheduleTask,
    "user_id": User,
    "node_id": Node,
    "blueprint_id": Blueprint,
}
# Routes that empty a set rather than delete one object: the second may find it empty
# (204, or 409 "nothing to remove") — what matters is no 500.
SETS = {
    "/api/v1/users/{user_id}/passkeys",
    "/api/v1/users/{user_id}/sessions",
    "/api/v1/users/{user_id}/sftp-passwords",
    "/api/v1/servers/{server_id}/sftp-password",
}
# Deleted on the node first, and the world's node answers nothing (503 before any row
# changes): test_deleted_twice_on_the_node.py sends these twice to a real agent.
ON_THE_NODE = {
    "/api/v1/servers/{server_id}",
    "/api/v1/servers/{server_id}/backups/{backup_id}",
    "/api/application/servers/{server_id}",
    "/api/application/servers/{server_id}/force",
    "/api/client/servers/{server_id}/backups/{backup_id}",
}
# A port given back: the node must take the spec without it, which the world's node cannot
# (and the world's servers have no port limit): test_server_port_changes.py sends it twice
# at once with a node that takes specs.
SPEC_FIRST = {
    "/api/v1/servers/{server_id}/allocations/{allocation_id}",
    "/api/client/servers/{server_id}/network/allocations/{allocation_id}",
}
DELETIONS = [
    e
    for e in endpoints()
    if e.method == "DELETE" and "{" in e.path and e.path not in ON_THE_NODE | SPEC_FIRST
]


def row_held(database_url: str, model: Any, row_id: uuid.UUID) -> Held:
    """Hold the row to delete (PostgreSQL: ``FOR UPDATE``) until the block ends."""
    return requests_held(
        database_url, f"SELECT 1 FROM {model.__tablename__} WHERE id = $1 FOR UPDATE", row_id
    )


async def _spare(world: World, model: Any) -> str:
    """A node or blueprint nothing uses (the world's are in use: their deletion is a 409)."""
    async with world.panel.db() as db:
        if model is Node:
            row: Any = Node(name="spare-node", url=DEAD_NODE_URL, memory_mib=0, disk_mib=0)
        else:
            used = await db.get(Blueprint, uuid.UUID(world.ids["blueprint"]))
            assert used is not None
            row = Blueprint(
                name="spare blueprint",
                description="",
                images=used.images,
                startup=used.startup,
                stop=used.stop,
                install=None,
                variables=[],
            )
        db.add(row)
        await db.flush()
        return str(row.id)


async def _compat_user_id(world: World, user_id: str) -> str:
    async with world.panel.db() as db:
        return str(await db.scalar(select(User.compat_id).where(User.id == uuid.UUID(user_id))))


async def _client_key_id(world: World, identifier: str) -> str:
    async with world.panel.db() as db:
        return str(await db.scalar(select(ApiKey.id).where(ApiKey.prefix == identifier)))


async def _target(world: World, endpoint: Endpoint) -> tuple[str, Any, uuid.UUID | None]:
    """The path to send, the model it deletes and that row's id (None for a set)."""
    last = re.findall(r"\{(\w+)\}", endpoint.path)[-1]
    path = concrete(endpoint, world)
    if endpoint.path in SETS:
        return path, None, None
    model = MODEL_OF[last]
    row_id = world.ids[ALICE_OBJECT[last]]
    if model is User:
        # Alice owns a server (a 409); carol only holds a sub-user's place on hers.
        row_id = world.ids["carol_user"]
        shown = row_id if endpoint.api == "native" else await _compat_user_id(world, row_id)
        path = path.rsplit("/", 1)[0] + "/" + shown
    elif model is ApiKey and endpoint.api == "client":
        # The Client API's key is alice's client key, named by its identifier.
        row_id = await _client_key_id(world, world.compat_ids["client"]["alice_key"])
    elif model in (Node, Blueprint):
        row_id = await _spare(world, model)
        path = path.rsplit("/", 1)[0] + "/" + row_id
    return path, model, uuid.UUID(row_id)


async def _audited_since(world: World, last: int) -> Counter[str]:
    async with world.panel.db() as db:
        actions = await db.scalars(select(AuditEntry.action).where(AuditEntry.id > last))
        return Counter(actions)


async def _last_audit(world: World) -> int:
    async with world.panel.db() as db:
        return int(await db.scalar(select(func.max(AuditEntry.id))) or 0)


async def _exists(world: World, model: Any, row_id: uuid.UUID) -> bool:
    async with world.panel.db() as db:
        return await db.get(model, row_id) is not None


@pytest.mark.parametrize("endpoint", DELETIONS, ids=lambda e: f"{e.api}:{e.path}")
async def test_one_object_deleted_twice_at_once(
    world: World, database_url: str, endpoint: Endpoint
) -> None:
    actor = world.admin if endpoint.access is Access.ADMIN else world.alice
    path, model, row_id = await _target(world, endpoint)
    last = await _last_audit(world)
    if row_id is None:
        answers = await asyncio.gather(*(actor.request("DELETE", path) for _ in range(2)))
    else:
        async with row_held(database_url, model, row_id) as held_up:
            calls = [asyncio.create_task(actor.request("DELETE", path)) for _ in range(2)]
            await held_up(2)
        answers = await asyncio.gather(*calls)
    statuses = sorted(answer.status for answer in answers)
    bodies = [await answer.text() for answer in answers]
    if row_id is None:
        assert set(statuses) <= {204, 409}, (statuses, bodies)
    else:
        assert statuses[0] in (200, 204), (statuses, bodies)
        assert statuses[1] in (404, 409), (statuses, bodies)
        assert not await _exists(world, model, row_id)
    audited = await _audited_since(world, last)
    twice = {action: n for action, n in audited.items() if n > 1 and action != "auth.denied"}
    assert not twice or endpoint.path == "/api/v1/users/{user_id}/sessions", (twice, bodies)
