"""Webhooks (docs/webhooks.md) and their outbox of deliveries.

A webhook belongs to one of three scopes: ``account`` (a user's own events and their
servers'), ``server`` (one server's events, managed by whoever holds ``webhooks.*`` on it) or
``panel`` (every event, administrators). Its signing secret is encrypted at rest.

A delivery row is written in the same transaction as the event it announces (the outbox), and
the dispatcher sends it later: nothing is lost when the process stops, nothing is sent for an
event that was rolled back.
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import JSON, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from control_plane.db.models.base import Base, CreatedMixin, IdMixin
from control_plane.security.encryption import ENCRYPTED_COLUMNS


class Webhook(IdMixin, CreatedMixin, Base):
    __tablename__ = "webhooks"

    # account | server | panel
    scope: Mapped[str] = mapped_column(String(16))
    # The account a webhook of scope ``account`` belongs to.
    user_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True, default=None
    )
    # The server a webhook of scope ``server`` belongs to.
    server_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("servers.id", ondelete="CASCADE"), index=True, default=None
    )
    created_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )
    # The API key whoever chose the URL used (None: a browser session). No foreign key: a
    # revoked key's row is deleted, and its absence is what turns the webhook off.
    chosen_with_key: Mapped[uuid.UUID | None] = mapped_column(default=None)
    name: Mapped[str] = mapped_column(String(64))
    url: Mapped[str] = mapped_column(String(2048))
    # standard (Standard Webhooks JSON, signed) | discord (Discord embeds, also signed)
    format: Mapped[str] = mapped_column(String(16), default="standard")
    events: Mapped[list[str]] = mapped_column(JSON)
    secret: Mapped[str] = mapped_column(String(512))
    enabled: Mapped[bool] = mapped_column(default=True)
    # Why the panel turned it off (deliveries failed for the whole retry window).
    disabled_reason: Mapped[str | None] = mapped_column(Text, default=None)
    disabled_at: Mapped[dt.datetime | None] = mapped_column(default=None)


ENCRYPTED_COLUMNS.append((Webhook, "secret"))


class WebhookDelivery(IdMixin, CreatedMixin, Base):
    """One event for one webhook: pending until sent, retried, then delivered or failed.

    ``next_attempt_at`` is when a dispatcher may take it; taking it moves that time past the
    attempt's deadline (a lease), so a dispatcher that dies mid-attempt leaves it to another.
    """

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),)

    webhook_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("webhooks.id", ondelete="CASCADE"), index=True
    )
    event_type: Mapped[str] = mapped_column(String(64))
    # The exact bytes sent (as UTF-8 text), the same on every attempt.
    body: Mapped[str] = mapped_column(Text)
    # pending | delivered | failed
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    last_attempt_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    response_status: Mapped[int | None] = mapped_column(default=None)
    latency_ms: Mapped[int | None] = mapped_column(default=None)
    error: Mapped[str | None] = mapped_column(String(500), default=None)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(default=None)
