"""Background polling of every node: online/offline and last seen, with backoff for dead nodes.

A node that answers for the first time since this monitor started, or again after it did not,
gets its whole SFTP access table (``control_plane/services/sftp.py``): a change pushed while
it was away, or while no control plane ran, reaches it this way.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from collections.abc import AsyncIterator

import structlog
from aiohttp import web
from sqlalchemy import select

from control_plane.db.job_lock import job_lock
from control_plane.db.models import Node
from control_plane.db.session import transaction
from control_plane.errors import ApiError
from control_plane.keys import ENGINE, METRICS, NODES, SESSIONS, SETTINGS
from control_plane.services import sftp

log = structlog.get_logger("nodes.health")
MAX_BACKOFF_SECONDS = 300.0


class NodeHealthMonitor:
    """Polls nodes; a node that fails is asked again after a doubling delay."""

    def __init__(self, app: web.Application) -> None:
        self._app = app
        self._interval = app[SETTINGS].node_health_interval_seconds
        self._next_poll: dict[uuid.UUID, float] = {}
        self._backoff: dict[uuid.UUID, float] = {}
        # Nodes that answered since their last failure and hold the current SFTP table.
        self._synced: set[uuid.UUID] = set()

    async def poll_once(self) -> None:
        async with transaction(self._app[SESSIONS]) as session:
            nodes = list(await session.scalars(select(Node)))
        now = time.monotonic()
        due = [n for n in nodes if self._next_poll.get(n.id, 0.0) <= now]
        await asyncio.gather(*(self._poll(node) for node in due))

    async def _poll(self, node: Node) -> None:
        try:
            await self._app[NODES].system_info(node)
        except ApiError as err:
            delay = min(self._backoff.get(node.id, self._interval / 2) * 2, MAX_BACKOFF_SECONDS)
            self._backoff[node.id] = delay
            self._next_poll[node.id] = time.monotonic() + delay
            self._synced.discard(node.id)
            self._app[METRICS].node_up.labels(node.name).set(0)
            await self._record(node.id, online=False)
            log.warning("node unreachable", node=node.name, error=err.message, retry_in=delay)
            return
        self._backoff.pop(node.id, None)
        self._next_poll[node.id] = time.monotonic() + self._interval
        self._app[METRICS].node_up.labels(node.name).set(1)
        await self._record(node.id, online=True)
        if node.id not in self._synced:
            self._synced.add(node.id)
            await sftp.push_access(self._app[SESSIONS], self._app[NODES], [node.id])

    async def _record(self, node_id: uuid.UUID, *, online: bool) -> None:
        async with transaction(self._app[SESSIONS]) as session:
            node = await session.get(Node, node_id)
            if node is None:
                return
            node.status = "online" if online else "offline"
            if online:
                node.last_seen_at = dt.datetime.now(dt.UTC)

    async def run(self) -> None:
        while True:
            async with job_lock(self._app[ENGINE], "node-health") as held:
                while held:
                    self._app[METRICS].job_runs.labels("node-health").inc()
                    try:
                        await self.poll_once()
                    except Exception:
                        self._app[METRICS].job_failures.labels("node-health").inc()
                        log.exception("node health poll failed")
                    await asyncio.sleep(min(self._interval, 5.0))
            # Another replica polls; take over if it goes away.
            await asyncio.sleep(self._interval)


async def node_health_monitor(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: the polling task lives exactly as long as the app."""
    task = asyncio.create_task(NodeHealthMonitor(app).run(), name="node-health")
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
