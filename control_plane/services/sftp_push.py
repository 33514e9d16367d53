"""Pushing each node its SFTP access table, versioned, one push per node at a time.

Every push takes the node's next version (``nodes.sftp_access_version``, raised by an UPDATE
that is the first statement of the transaction that then reads the table): the row lock
orders concurrent pushes, and a push that takes a higher version reads a database at least
as new. The agent refuses a table older than the one it holds (409), so a push overtaken on
the way, or delivered late, can never bring back access a newer one took away. Pushes to one
node from this process also wait for each other (a per-node lock), so they leave in order.

A push that fails is only logged here. A push the node took is recorded
(``nodes.sftp_acked_version``); the node-health loop (``control_plane/nodes/health.py``) pushes
again to a reachable node whose recorded version is behind its counter (every few seconds),
and to one whose own answer shows another version than the counter (every health interval),
so a failed push is retried even if the node never went down.
"""

from __future__ import annotations

import asyncio
import uuid
import weakref
from collections.abc import Iterable

import structlog
from sqlalchemy import case, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from control_plane.db.models import Node
from control_plane.db.session import transaction
from control_plane.nodes.client import NodeClient
from control_plane.services.sftp import node_access
from shared.errors import ApiError, Conflict
from shared.sftp_api import SftpAccess

log = structlog.get_logger("cp.sftp")
# Per node client (one per app; tests run several apps in one process), per node.
_LOCKS: weakref.WeakKeyDictionary[NodeClient, dict[uuid.UUID, asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)


def _lock(nodes: NodeClient, node_id: uuid.UUID) -> asyncio.Lock:
    return _LOCKS.setdefault(nodes, {}).setdefault(node_id, asyncio.Lock())


async def next_table(
    sessions: async_sessionmaker[AsyncSession], node_id: uuid.UUID, *, above: int = 0
) -> tuple[Node, SftpAccess] | None:
    """The node and its table under a new version (above ``above`` too); None: no such node.

    ``above``: a version the node reported holding; after a database restore the counter can
    be behind the node, which would refuse every table until the counter passes it.
    """
    async with transaction(sessions) as db:
        # First statement: it takes the row's lock, so the reads below see every change
        # committed by a push that took a lower version.
        version = await db.scalar(
            update(Node)
            .where(Node.id == node_id)
            .values(
                sftp_access_version=case(
                    (Node.sftp_access_version > above, Node.sftp_access_version), else_=above
                )
                + 1
            )
            .returning(Node.sftp_access_version)
        )
        if version is None:
            return None
        node = await db.get(Node, node_id)
        assert node is not None
        return node, await node_access(db, node_id, version)


async def acknowledged(
    sessions: async_sessionmaker[AsyncSession], node_id: uuid.UUID, version: int
) -> None:
    """The node holds ``version`` (never lowers what is recorded: pushes can cross)."""
    async with transaction(sessions) as db:
        await db.execute(
            update(Node)
            .where(Node.id == node_id, Node.sftp_acked_version < version)
            .values(sftp_acked_version=version)
        )


async def deliver(nodes: NodeClient, node: Node, access: SftpAccess) -> bool:
    """Send one table; whether the node took it (a failure is logged, the health loop retries)."""
    try:
        await nodes.push_sftp_access(node, access)
    except Conflict as err:
        # The node holds a newer table: a later push overtook this one, which is fine.
        log.info("sftp access older than the node's", node=str(node.id), error=err.message)
        return False
    except ApiError as err:
        log.warning("sftp access not pushed", node=str(node.id), error=err.message)
        return False
    return True


async def push_access(
    sessions: async_sessionmaker[AsyncSession],
    nodes: NodeClient,
    node_ids: Iterable[uuid.UUID],
    *,
    above: int = 0,
) -> None:
    """Push each node a new version of its table (read in a transaction of its own, sent
    with none open), one push per node at a time."""
    for node_id in sorted(set(node_ids)):
        async with _lock(nodes, node_id):
            prepared = await next_table(sessions, node_id, above=above)
            if prepared is not None and await deliver(nodes, *prepared):
                await acknowledged(sessions, node_id, prepared[1].version)


def pushing(nodes: NodeClient, node_id: uuid.UUID) -> bool:
    """Whether this process is pushing to the node right now."""
    lock = _LOCKS.get(nodes, {}).get(node_id)
    return lock is not None and lock.locked()
