"""Second factors: a TOTP authenticator per user and single-use recovery codes.

The TOTP secret is encrypted at rest (SecretBox, bound to its row). A credential is inactive
(``enabled_at`` is None) between setup and the first verified code. ``last_step`` is the last
RFC 6238 time step accepted, so each code works once. Each wrong code leaves a
``SecondFactorFailure`` row, which the account's allowance of wrong codes counts.
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from control_plane.db.models.base import Base, CreatedMixin, IdMixin
from control_plane.security.encryption import ENCRYPTED_COLUMNS


class TotpCredential(IdMixin, CreatedMixin, Base):
    __tablename__ = "totp_credentials"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), unique=True
    )
    secret: Mapped[str] = mapped_column(Text)
    enabled_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    last_step: Mapped[int | None] = mapped_column(BigInteger, default=None)


ENCRYPTED_COLUMNS.append((TotpCredential, "secret"))


class RecoveryCode(IdMixin, CreatedMixin, Base):
    __tablename__ = "recovery_codes"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    # SHA-256 of the normalised code: the codes carry 80 random bits, so no slow hash is needed.
    code_hash: Mapped[str] = mapped_column(String(64))
    used_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class SecondFactorFailure(IdMixin, Base):
    """One wrong code (TOTP or recovery) given for an account, from any address or session."""

    __tablename__ = "second_factor_failures"
    __table_args__ = (Index("ix_second_factor_failures_user_id_failed_at", "user_id", "failed_at"),)

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    # The app's wall clock (tests move it), not the database's.
    failed_at: Mapped[dt.datetime]
    # The session it was given in: a later right code in that same session forgives it (its
    # owner's typos). No foreign key: the session ends, the failure still counts.
    session_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
