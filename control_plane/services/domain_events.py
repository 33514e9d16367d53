"""What happened in the panel, handed to the subscribers that act on it later.

Every audited action (``audit.append``) and every server state change the nodes report
(``server.state``, not audited: there are too many) is published here, inside the
transaction that records it. A subscriber only adds rows to that transaction (a webhook
delivery in the outbox, a mail to send): it never waits on the network, and what it adds is
committed or rolled back with the event itself, so nothing is sent for an action that did
not happen, and nothing is lost when the process dies after the commit.

Subscribers are listed in ``subscribers()``; each is ``async (db, event) -> None``.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

# The state change a node reported (details: ``state``, ``previous``).
SERVER_STATE = "server.state"


@dataclass(frozen=True)
class DomainEvent:
    """One thing that happened: the audit action's name, its target, who and from where."""

    action: str
    target_type: str | None = None
    target_id: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    actor_id: uuid.UUID | None = None
    actor_email: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))


Subscriber = Callable[[AsyncSession, DomainEvent], Awaitable[None]]


def subscribers() -> tuple[Subscriber, ...]:
    """Who acts on events, in order. (Imported late: subscribers write audit rows too.)"""
    from control_plane.services import mail_alerts, state_fanout
    from control_plane.services.webhooks.outbox import enqueue_event

    return (mail_alerts.on_event, enqueue_event, state_fanout.on_event)


async def publish(db: AsyncSession, event: DomainEvent) -> None:
    """Hand ``event`` to every subscriber, inside the caller's transaction."""
    for subscriber in subscribers():
        await subscriber(db, event)
