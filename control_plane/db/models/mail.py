"""Mail: the outbox the background sender reads, single-use mailed tokens, invitations of
people without an account, alert preferences and the devices a user signed in from."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import JSON, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from control_plane.db.models.base import Base, CreatedMixin, IdMixin, utcnow


class OutboxMail(IdMixin, CreatedMixin, Base):
    """One mail to send; added in the transaction of the action it tells about."""

    __tablename__ = "mail_outbox"

    kind: Mapped[str] = mapped_column(String(32))
    to_address: Mapped[str] = mapped_column(String(254))
    subject: Mapped[str] = mapped_column(String(255))
    # Emptied once sent: a mailed link must not outlive its delivery in the database.
    text_body: Mapped[str] = mapped_column(Text)
    html_body: Mapped[str] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    sent_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    # Given up on (after about a day of retries): kept with its last error.
    failed_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    last_error: Mapped[str | None] = mapped_column(String(512), default=None)
    # Being sent by one replica until then (``mail/sender.py``): no other sends it meanwhile.
    claimed_until: Mapped[dt.datetime | None] = mapped_column(default=None)


class MailToken(IdMixin, CreatedMixin, Base):
    """A single-use token sent by mail: e-mail verification or password reset.

    Only the SHA-256 of the token is stored; ``email`` is the address the mail went to (for
    a verification, the address it proves, which may be a new one the user asked for).
    """

    __tablename__ = "mail_tokens"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    purpose: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    email: Mapped[str] = mapped_column(String(254))
    expires_at: Mapped[dt.datetime]
    used_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class Invitation(IdMixin, CreatedMixin, Base):
    """Access to a server offered to an address that has no account yet."""

    __tablename__ = "invitations"

    server_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("servers.id", ondelete="CASCADE"), index=True
    )
    email: Mapped[str] = mapped_column(String(254))
    permissions: Mapped[list[str]] = mapped_column(JSON)
    invited_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[dt.datetime]
    accepted_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class AlertPreferences(Base):
    """The alerts a user asked to get by mail (none until they opt in)."""

    __tablename__ = "alert_preferences"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    server_crashed: Mapped[bool] = mapped_column(default=False)
    backup_failed: Mapped[bool] = mapped_column(default=False)
    disk_full: Mapped[bool] = mapped_column(default=False)
    new_sign_in: Mapped[bool] = mapped_column(default=False)


class KnownDevice(IdMixin, CreatedMixin, Base):
    """A browser a user signed in from: its user agent and network (/24 or /64), hashed."""

    __tablename__ = "known_devices"
    __table_args__ = (UniqueConstraint("user_id", "fingerprint"),)

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    fingerprint: Mapped[str] = mapped_column(String(64))
    last_seen_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
