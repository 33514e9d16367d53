"""Node events for the control plane: state changes, crashes, installs, pulls, full disks.

:class:`NodeEventBus` fans each event out to every subscriber (``GET /api/v1/events``
sockets). Publishing never waits: each subscriber has a bounded queue, and one that falls
behind loses events, counted, and is told how many with an ``EventsDropped`` once it catches up.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from typing import Final

import structlog

from node_agent.docker.containers import ImagePull
from shared.node_api import DiskFullEvent, EventsDropped, ImagePullEvent, NodeEvent

log = structlog.get_logger("agent.events")
SUBSCRIBER_QUEUE_EVENTS: Final = 1000


class EventSubscription:
    """One subscriber's queue and the count of events it lost."""

    def __init__(self, max_events: int) -> None:
        self._queue: asyncio.Queue[NodeEvent] = asyncio.Queue(max_events)
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


class NodeEventBus:
    """Every subscriber of this node's events."""

    def __init__(self, queue_events: int = SUBSCRIBER_QUEUE_EVENTS) -> None:
        self._queue_events = queue_events
        self._subscribers: set[EventSubscription] = set()
        self.published = 0
        # Called with each event as it is published (the agent's metrics); never waits.
        self.observers: list[Callable[[NodeEvent], None]] = []

    @property
    def dropped(self) -> int:
        """Events lost by current subscribers, in total."""
        return sum(subscriber.dropped for subscriber in self._subscribers)

    def subscribe(self) -> EventSubscription:
        subscription = EventSubscription(self._queue_events)
        self._subscribers.add(subscription)
        return subscription

    def unsubscribe(self, subscription: EventSubscription) -> None:
        with contextlib.suppress(KeyError):
            self._subscribers.remove(subscription)

    def publish(self, event: NodeEvent) -> None:
        """Hand ``event`` to every subscriber without waiting for any."""
        self.published += 1
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
