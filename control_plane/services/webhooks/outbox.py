"""Deliveries written in the transaction of the event they announce (the outbox).

:func:`enqueue_event` is a domain-event subscriber: it finds the enabled webhooks the event
concerns and adds one pending ``webhook_deliveries`` row for each that subscribes to it. It
never touches the network; the dispatcher sends the rows once they are committed.

Who receives what:

- ``panel`` webhooks: every event;
- ``server`` webhooks: events whose target is their server;
- ``account`` webhooks: events on a server the account owns, and events the account did or
  that concern it (its sign-ins).
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.models import Server, Webhook, WebhookDelivery
from control_plane.services.domain_events import DomainEvent
from control_plane.services.webhooks.catalogue import (
    TEST_EVENT,
    delivery_type,
    envelope,
    render,
)


def _uuid(text: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(text) if text else None
    except ValueError:
        return None


def pending(hook: Webhook, event_type: str, body: str) -> WebhookDelivery:
    """A delivery due now."""
    now = dt.datetime.now(dt.UTC)
    return WebhookDelivery(
        id=uuid.uuid4(),
        created_at=now,
        webhook_id=hook.id,
        event_type=event_type,
        body=body,
        status="pending",
        attempts=0,
        next_attempt_at=now,
    )


async def enqueue_event(db: AsyncSession, event: DomainEvent) -> None:
    """Subscriber: a pending delivery for every webhook ``event`` concerns and subscribes to."""
    server = None
    if event.target_type == "server":
        server_id = _uuid(event.target_id)
        server = await db.get(Server, server_id) if server_id else None
    accounts = {event.actor_id} if event.actor_id else set()
    if event.target_type == "user" and (target := _uuid(event.target_id)) is not None:
        accounts.add(target)
    if server is not None:
        accounts.add(server.owner_id)
    scopes: list[Any] = [Webhook.scope == "panel"]
    if server is not None:
        scopes.append(and_(Webhook.scope == "server", Webhook.server_id == server.id))
    if accounts:
        scopes.append(and_(Webhook.scope == "account", Webhook.user_id.in_(accounts)))
    hooks = await db.scalars(select(Webhook).where(Webhook.enabled.is_(True), or_(*scopes)))
    server_data = {"id": str(server.id), "name": server.name} if server is not None else None
    for hook in hooks:
        event_type = delivery_type(event.action, list(hook.events))
        if event_type is None:
            continue
        body = render(hook.format, envelope(event_type, event, server_data))
        db.add(pending(hook, event_type, body))


def test_delivery(hook: Webhook) -> WebhookDelivery:
    """A ``webhook.test`` delivery for ``hook`` (tried once, never retried)."""
    payload = {
        "type": TEST_EVENT,
        "timestamp": dt.datetime.now(dt.UTC).isoformat(),
        "data": {"webhook_id": str(hook.id), "message": "This is a test event from StellarStack."},
    }
    return pending(hook, TEST_EVENT, render(hook.format, payload))
