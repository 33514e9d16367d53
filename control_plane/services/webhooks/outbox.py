"""Deliveries written in the transaction of the event they announce (the outbox).

:func:`enqueue_event` is a domain-event subscriber: it finds the enabled webhooks the event
concerns and adds one pending ``webhook_deliveries`` row for each that subscribes to it. It
never touches the network; the dispatcher sends the rows once they are committed.

Who receives what:

- ``panel`` webhooks: every event;
- ``server`` webhooks: events whose target is their server;
- ``account`` webhooks: events on a server the account owns, and events the account did or
  that concern it (its sign-ins).

A webhook sends for the user who chose its URL (``created_by``: its creator, or whoever
moved it since), and only what that user may still see: an enabled account; for a panel
webhook, an administrator; for a server webhook, the server's owner, an administrator or a
sub-user of it, and for activity entries (``audit``, ``server.power``) one holding
``activity.read``. A sub-user removed from the server, or an administrator no longer one,
turns their webhooks off (``disabled_reason`` says why; whoever moves one to a URL of their
own takes it over); a narrowed or disabled one just gets nothing they may not see.
A URL chosen with an API key (``chosen_with_key``) sends only while that key lives: revoked
or expired, it turns the webhook off too — a leaked key's feed ends with the key.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Final

from sqlalchemy import and_, bindparam, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.models import ApiKey, Server, Subuser, User, Webhook, WebhookDelivery
from control_plane.security.permissions import holds
from control_plane.services.domain_events import DomainEvent
from control_plane.services.webhooks.catalogue import (
    ACTIVITY_EVENTS,
    TEST_EVENT,
    delivery_type,
    envelope,
    render,
)
from control_plane.services.webhooks.retries import turn_off

# What the user a webhook sends for may receive: everything, nothing for now (a disabled
# account), everything but activity entries, or nothing ever (the reason it is turned off).
_ALL: Final = "all"
_NONE_NOW: Final = "none"
_NO_ACTIVITY: Final = "no activity"


# The enabled webhooks an event concerns (the module's list), built once: every state change
# of every server asks it, and building the statement cost as much as running it.
_CONCERNED: Final = select(Webhook).where(
    Webhook.enabled.is_(True),
    or_(
        Webhook.scope == "panel",
        and_(Webhook.scope == "server", Webhook.server_id == bindparam("server")),
        and_(
            Webhook.scope == "account", Webhook.user_id.in_(bindparam("accounts", expanding=True))
        ),
    ),
)


def _uuid(text: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(text) if text else None
    except ValueError:
        return None


def _aware(moment: dt.datetime) -> dt.datetime:
    """SQLite gives datetimes back without their zone (UTC, as written)."""
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


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
    hooks = await db.scalars(
        _CONCERNED, {"server": server.id if server else None, "accounts": list(accounts)}
    )
    server_data = {"id": str(server.id), "name": server.name} if server is not None else None
    for hook in hooks:
        event_type = delivery_type(event.action, list(hook.events))
        if event_type is None:
            continue
        standing = await _standing(db, hook, server)
        if turns_off(standing):
            await turn_off(db, hook, dt.datetime.now(dt.UTC), reason=standing)
            continue
        if withheld(standing, event_type) is not None:
            continue
        body = render(hook.format, envelope(event_type, event, server_data))
        db.add(pending(hook, event_type, body))


async def standing(db: AsyncSession, hook: Webhook) -> str:
    """What the user ``hook`` sends for may receive now, or why it must be turned off: asked
    again when its deliveries are sent (``dispatcher.py``), since they may have waited while
    that user lost access."""
    server = await db.get(Server, hook.server_id) if hook.server_id is not None else None
    return await _standing(db, hook, server)


def turns_off(standing: str) -> bool:
    """Whether ``standing`` (:func:`standing`) is a reason to turn the webhook off."""
    return standing not in (_ALL, _NONE_NOW, _NO_ACTIVITY)


def withheld(standing: str, event_type: str) -> str | None:
    """Why an event of ``event_type`` is not sent under ``standing``; None if it is."""
    if standing == _ALL:
        return None
    if standing == _NONE_NOW:
        return "the account of the user who chose this webhook's URL is disabled"
    if standing == _NO_ACTIVITY:
        if event_type in ACTIVITY_EVENTS:
            return "the user who chose this webhook's URL may no longer see the server's activity"
        return None
    return standing


async def _standing(db: AsyncSession, hook: Webhook, server: Server | None) -> str:
    """What the user ``hook`` sends for may receive now (``_ALL``, ``_NONE_NOW``,
    ``_NO_ACTIVITY``), or why the webhook must be turned off."""
    chooser_id = hook.user_id if hook.scope == "account" else hook.created_by
    user = await db.get(User, chooser_id) if chooser_id is not None else None
    if user is None:
        return "the user who chose this webhook's URL no longer exists"
    if hook.chosen_with_key is not None:
        key = await db.get(ApiKey, hook.chosen_with_key)
        if key is None:
            return "the API key this webhook's URL was chosen with was revoked"
        if key.expires_at is not None and _aware(key.expires_at) <= dt.datetime.now(dt.UTC):
            return "the API key this webhook's URL was chosen with has expired"
    if user.disabled:
        return _NONE_NOW
    if hook.scope == "panel" and not user.is_admin:
        return f"{user.email}, who chose this webhook's URL, is no longer an administrator"
    if hook.scope != "server" or server is None or user.is_admin or user.id == server.owner_id:
        return _ALL
    granted = await db.scalar(
        select(Subuser.permissions).where(
            Subuser.server_id == server.id, Subuser.user_id == user.id
        )
    )
    if granted is None:
        return f"{user.email}, who chose this webhook's URL, no longer has access to this server"
    return _ALL if holds(granted, "activity.read") else _NO_ACTIVITY


def test_delivery(hook: Webhook) -> WebhookDelivery:
    """A ``webhook.test`` delivery for ``hook`` (tried once, never retried)."""
    payload = {
        "type": TEST_EVENT,
        "timestamp": dt.datetime.now(dt.UTC).isoformat(),
        "data": {"webhook_id": str(hook.id), "message": "This is a test event from StellarStack."},
    }
    return pending(hook, TEST_EVENT, render(hook.format, payload))
