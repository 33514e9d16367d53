"""Accounts. Passwords are bcrypt hashes; e-mail addresses are stored lower-cased."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, String
from sqlalchemy.orm import Mapped, mapped_column

from control_plane.db.models.base import Base, CreatedMixin, IdMixin
from control_plane.db.models.compat import CompatIdMixin


class User(IdMixin, CreatedMixin, CompatIdMixin, Base):
    __tablename__ = "users"

    email: Mapped[str] = mapped_column(String(254), unique=True)
    # The account name in SFTP logins (<username>.<server short id>); made from the e-mail.
    username: Mapped[str] = mapped_column(String(32), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(128), default=None)
    is_admin: Mapped[bool] = mapped_column(default=False)
    disabled: Mapped[bool] = mapped_column(default=False)
    # When every session of the account was last ended (``end_all_sessions``): a browser
    # that signed in before is a stranger to the account again (security/devices.py).
    sessions_ended_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    # When the address was proven by a mailed link (None: not yet; see docs/email.md).
    email_verified_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    # The Pterodactyl-compatible API: the billing system's id, and what it sends that we only
    # keep and echo (first_name, last_name, language).
    external_id: Mapped[str | None] = mapped_column(
        String(191), unique=True, index=True, default=None
    )
    compat_fields: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    # IANA time zone (checked against zoneinfo): schedules on the user's servers run by it.
    timezone: Mapped[str] = mapped_column(String(64), default="UTC", server_default="UTC")
