"""Second factors: a TOTP authenticator per user and single-use recovery codes.

The TOTP secret is encrypted at rest (SecretBox, bound to its row). A credential is inactive
(``enabled_at`` is None) between setup and the first verified code. ``last_step`` is the last
RFC 6238 time step accepted, so each code works once.
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import BigInteger, ForeignKey, String, Text
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
