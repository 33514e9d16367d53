"""Accounts. Passwords are bcrypt hashes; e-mail addresses are stored lower-cased."""

from __future__ import annotations

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from control_plane.db.models.base import Base, CreatedMixin, IdMixin


class User(IdMixin, CreatedMixin, Base):
    __tablename__ = "users"

    email: Mapped[str] = mapped_column(String(254), unique=True)
    # The account name in SFTP logins (<username>.<server short id>); made from the e-mail.
    username: Mapped[str] = mapped_column(String(32), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(128), default=None)
    is_admin: Mapped[bool] = mapped_column(default=False)
    disabled: Mapped[bool] = mapped_column(default=False)
    # IANA time zone (checked against zoneinfo): schedules on the user's servers run by it.
    timezone: Mapped[str] = mapped_column(String(64), default="UTC", server_default="UTC")
