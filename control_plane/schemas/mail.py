"""Invitations and alert preferences."""

from __future__ import annotations

import datetime as dt
import uuid

from pydantic import Field

from control_plane.schemas.common import Input, Output
from control_plane.security.passwords import MAX_LENGTH, MIN_LENGTH


class InvitationOut(Output):
    id: uuid.UUID
    email: str
    permissions: list[str]
    created_at: dt.datetime
    expires_at: dt.datetime


class InvitationList(Output):
    data: list[InvitationOut]


class InvitationView(Output):
    """What an invitation link offers (nothing is used up by looking)."""

    email: str
    server_name: str
    permissions: list[str]
    expires_at: dt.datetime
    how: str


class InvitationAcceptIn(Input):
    token: str = Field(min_length=20, max_length=128)
    password: str = Field(min_length=MIN_LENGTH, max_length=MAX_LENGTH)


class InvitationJoinIn(Input):
    token: str = Field(min_length=20, max_length=128)


class InvitationJoined(Output):
    server_id: uuid.UUID
    permissions: list[str]


class AlertPreferencesIO(Input):
    """The alerts mailed to me (all off until I opt in)."""

    server_crashed: bool = False
    backup_failed: bool = False
    # Full, or nearly full (when nodes report it).
    disk_full: bool = False
    # A sign-in from a device (user agent + /24 or /64 network) not seen before.
    new_sign_in: bool = False


class MailStatusOut(Output):
    """How this panel sends mail, its switches, and the outbox (administrators)."""

    enabled: bool
    smtp_host: str | None
    smtp_port: int | None
    smtp_security: str
    mail_from: str | None
    registration: str
    require_email_verification: bool
    # Waiting to be sent (including retries), and given up on in the last 30 days.
    queued: int
    failed: int
    # The most recent delivery error, if any mail is failing now.
    last_error: str | None
