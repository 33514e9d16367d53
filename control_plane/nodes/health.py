"""Background polling of every node: online/offline and last seen, with backoff for dead nodes.

Each answer says which version of its SFTP access table the node holds; while that is not the
node's counter (``control_plane/services/sftp_push.py``) the node gets its table again: a push
that failed (node down, or up but the push lost), or a change made while no control plane
ran, reaches it this way within one interval. A reachable node whose last push failed
(``sftp_acked_version`` behind the counter) is pushed again at the next pass (≤ 5 s).

Each poll also measures the node's clock offset (``control_plane/nodes/clock.py``) and keeps
it on the node and in ``stellar_node_clock_offset_seconds``. A node that refuses our
commands for their time is offline for commands but alive: it is asked again at the usual
interval, not backed off, so that a clock set right is seen within one interval.
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

from control_plane import background
from control_plane.db.faults import as_api_error
from control_plane.db.models import Node
from control_plane.db.session import transaction
from control_plane.errors import ApiError
from control_plane.keys import LEASES, METRICS, NODES, SESSIONS, SETTINGS
from control_plane.nodes.clock import NodeClockSkewed
from control_plane.services import sftp_push

log = structlog.get_logger("nodes.health")
MAX_BACKOFF_SECONDS = 300.0
CLAIM_SECONDS = 5.0


class NodeHealthMonitor:
    """Polls nodes; a node that fails is asked again after a doubling delay."""

    def __init__(self, app: web.Application) -> None:
        self._app = app
        self._interval = app[SETTINGS].node_health_interval_seconds
        self._next_poll: dict[uuid.UUID, float] = {}
        self._backoff: dict[uuid.UUID, float] = {}

    async def poll_once(self) -> None:
        async with transaction(self._app[SESSIONS]) as session:
            nodes = list(await session.scalars(select(Node)))
        now = time.monotonic()
        due = [n for n in nodes if self._next_poll.get(n.id, 0.0) <= now]
        # Reachable nodes that did not take their last SFTP table (a push lost while they
        # stayed up): pushed again now, not only at their next poll.
        behind = [
            n
            for n in nodes
            if n not in due
            and n.id not in self._backoff
            and n.sftp_acked_version < n.sftp_access_version
            and not sftp_push.pushing(self._app[NODES], n.id)
        ]
        await asyncio.gather(
            *(self._poll(node) for node in due),
            *(self._push(node, above=0) for node in behind),
        )

    async def _push(self, node: Node, *, above: int) -> None:
        log.info("node behind on its sftp table", node=node.name)
        await sftp_push.push_access(self._app[SESSIONS], self._app[NODES], [node.id], above=above)

    async def _poll(self, node: Node) -> None:
        nodes = self._app[NODES]
        nodes.clock.forget(node.id)
        try:
            info = await nodes.system_info(node)
        except NodeClockSkewed as err:
            self._backoff.pop(node.id, None)
            self._next_poll[node.id] = time.monotonic() + self._interval
            self._app[METRICS].node_up.labels(node.name).set(0)
            self._clock_offset(node, err.offset)
            await self._record(node.id, online=False, offset=err.offset)
            log.warning("node clock off", node=node.name, error=err.message, offset=err.offset)
            return
        except ApiError as err:
            delay = min(self._backoff.get(node.id, self._interval / 2) * 2, MAX_BACKOFF_SECONDS)
            self._backoff[node.id] = delay
            self._next_poll[node.id] = time.monotonic() + delay
            self._app[METRICS].node_up.labels(node.name).set(0)
            await self._record(node.id, online=False)
            log.warning("node unreachable", node=node.name, error=err.message, retry_in=delay)
            return
        self._backoff.pop(node.id, None)
        self._next_poll[node.id] = time.monotonic() + self._interval
        self._app[METRICS].node_up.labels(node.name).set(1)
        held = info.sftp_access_version or 0
        offset = nodes.clock.latest(node.id)
        self._clock_offset(node, offset)
        await self._record(node.id, online=True, held=held, offset=offset)
        # ``node`` was read before the poll: a push that took a version since then and
        # reached the node shows as "ahead" here and costs one extra push, nothing more. A
        # node that lost its table, or a database restored from a backup, differ too.
        if held != node.sftp_access_version:
            await self._push(node, above=held)

    def _clock_offset(self, node: Node, offset: float | None) -> None:
        if offset is not None:
            self._app[METRICS].node_clock_offset.labels(node.name).set(offset)

    async def _record(
        self, node_id: uuid.UUID, *, online: bool, held: int = 0, offset: float | None = None
    ) -> None:
        async with transaction(self._app[SESSIONS]) as session:
            node = await session.get(Node, node_id)
            if node is None:
                return
            node.status = "online" if online else "offline"
            if offset is not None:
                node.clock_offset_seconds = round(offset, 3)
            if online:
                node.last_seen_at = dt.datetime.now(dt.UTC)
                # What the node says it holds is the truth (it may have lost its table).
                node.sftp_acked_version = held

    async def run(self) -> None:
        """Poll while this replica holds the ``node-health`` lease (a leader: one replica
        polls; another takes over within the lease's expiry when it dies or freezes). Not
        while it stands aside, unable to reach the nodes the others follow (it would mark
        every node offline): it gives the lease up, and another replica polls."""
        leases = self._app[LEASES]
        while True:
            lease = await leases.try_acquire("node-health") if leases.counted else None
            try:
                while lease is not None and leases.counted and await lease.confirm():
                    self._app[METRICS].job_runs.labels("node-health").inc()
                    try:
                        await self.poll_once()
                    except Exception as err:
                        self._app[METRICS].job_failures.labels("node-health").inc()
                        # The database down or busy is one line a pass, not a traceback;
                        # the next pass tries again (control_plane/db/faults.py).
                        fault = as_api_error(err)
                        if fault is None:
                            log.exception("node health poll failed")
                        else:
                            log.warning(
                                "node health poll: database fault",
                                answer=fault.message,
                                error=f"{type(err).__name__}: {err}"[:300],
                            )
                    await asyncio.sleep(min(self._interval, 5.0))
            finally:
                if lease is not None:
                    await lease.release()
            # Another replica polls; take over if it goes away.
            await asyncio.sleep(min(self._interval, CLAIM_SECONDS))


async def node_health_monitor(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: the polling task lives exactly as long as the app."""
    task = asyncio.create_task(NodeHealthMonitor(app).run(), name="node-health")
    yield
    await background.stop(task)
