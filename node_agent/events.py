"""Node events for the control plane: state changes, crashes, installs, pulls, full disks.

:class:`NodeEventBus` fans each event out to every subscriber (``GET /api/v1/events``
sockets). Publishing never waits: each subscriber has a bounded queue, and one that falls
behind loses events, counted, and is told how many with an ``EventsDropped`` once it catches up.

Every event gets the next number of the agent's stream (a stream per start of the agent,
its ``epoch``), and the audit-worthy ones (``shared.node_api.REPLAYED``: crashes, backups,
full disks, SFTP logins and failures) are kept, the last :data:`BACKLOG_EVENTS` SFTP logins
and as many of the others: a follower that was away (a control-plane replica restarted or
taken over) resumes after the last one it applied and gets those it missed first. States
need no replay (a follower reads them again on every connect).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import uuid
from collections import deque
from collections.abc import Callable
from typing import Final

import structlog

from node_agent.docker.containers import ImagePull
from shared.node_api import (
    REPLAYED,
    DiskFullEvent,
    EventsDropped,
    ImagePullEvent,
    NodeEvent,
    Numbered,
    StreamStart,
)

log = structlog.get_logger("agent.events")
SUBSCRIBER_QUEUE_EVENTS: Final = 1000
# Audit-worthy events kept for a follower that resumes: this many SFTP logins, and as many
# of the others (a brute force of known accounts does not push crashes out).
BACKLOG_EVENTS: Final = 1000


class EventSubscription:
    """One subscriber's queue and the count of events it lost; ``start`` is its stream's
    first frame."""

    def __init__(self, max_events: int, start: StreamStart, replayed: list[NodeEvent]) -> None:
        # Room for the replay on top of the live events' (a full backlog costs none of it).
        self._queue: asyncio.Queue[NodeEvent] = asyncio.Queue(max_events + len(replayed))
        for event in replayed:
            self._queue.put_nowait(event)
        self.start = start
        self.dropped = 0
        self._lost_since_told = 0

    def offer(self, event: NodeEvent) -> None:
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1
            self._lost_since_told += 1

    async def next(self) -> NodeEvent:
        """The next event; an ``EventsDropped`` first once the backlog is drained after a loss."""
        if self._queue.empty() and self._lost_since_told:
            lost, self._lost_since_told = self._lost_since_told, 0
            return EventsDropped(count=lost)
        return await self._queue.get()


def _number(event: NodeEvent) -> int:
    return getattr(event, "seq", None) or 0


class NodeEventBus:
    """Every subscriber of this node's events."""

    def __init__(
        self, queue_events: int = SUBSCRIBER_QUEUE_EVENTS, backlog_events: int = BACKLOG_EVENTS
    ) -> None:
        self._queue_events = queue_events
        self._subscribers: set[EventSubscription] = set()
        self.published = 0
        # This start of the agent's stream, and the kept events (numbered, oldest first).
        self.epoch = secrets.token_hex(8)
        self._logins: deque[NodeEvent] = deque(maxlen=backlog_events)
        self._others: deque[NodeEvent] = deque(maxlen=backlog_events)
        # Called with each event as it is published (the agent's metrics); never waits.
        self.observers: list[Callable[[NodeEvent], None]] = []

    @property
    def dropped(self) -> int:
        """Events lost by current subscribers, in total."""
        return sum(subscriber.dropped for subscriber in self._subscribers)

    def subscribe(self, after: str | None = None) -> EventSubscription:
        """A new subscriber; with ``after`` (``<epoch>:<seq>``, the last numbered event it
        applied), first the kept events that came after that one: of this stream those
        numbered above ``seq``; from another start of the agent (or ``after`` naming none),
        every kept one — all came after it."""
        start = StreamStart(epoch=self.epoch, seq=self.published)
        replayed: list[NodeEvent] = []
        epoch, _, seq = (after or "").partition(":")
        if after is not None:
            since = int(seq) if epoch == self.epoch and seq.isdigit() else 0
            kept = sorted([*self._logins, *self._others], key=_number)
            replayed = [event for event in kept if _number(event) > since]
        subscription = EventSubscription(self._queue_events, start, replayed)
        self._subscribers.add(subscription)
        return subscription

    def unsubscribe(self, subscription: EventSubscription) -> None:
        with contextlib.suppress(KeyError):
            self._subscribers.remove(subscription)

    def publish(self, event: NodeEvent) -> None:
        """Hand ``event`` to every subscriber without waiting for any."""
        self.published += 1
        if event.type in REPLAYED and isinstance(event, Numbered):
            event = event.model_copy(update={"seq": self.published})
            (self._logins if event.type == "sftp_login" else self._others).append(event)
        for observer in self.observers:
            observer(event)
        for subscriber in self._subscribers:
            subscriber.offer(event)

    def disk_full(
        self, server_id: uuid.UUID, *, used_bytes: int | None = None, limit_bytes: int | None = None
    ) -> None:
        """The storage backend's hook: a server's volume hit its limit."""
        log.warning("server disk full", server=str(server_id), used=used_bytes, limit=limit_bytes)
        self.publish(
            DiskFullEvent(server=server_id, used_bytes=used_bytes, limit_bytes=limit_bytes)
        )

    def image_pull(self, pull: ImagePull) -> None:
        """The container runtime's pull listener."""
        self.publish(
            ImagePullEvent(
                image=pull.image,
                status=pull.status,
                current_bytes=pull.current_bytes,
                total_bytes=pull.total_bytes,
                detail=pull.detail,
            )
        )
