"""A user's SFTP password for one server (docs/sftp.md): encrypted at rest, as DESIGN.md
"Secrets at rest" lists SFTP passwords, and its scrypt hash, which is all a node receives."""

from __future__ import annotations

import uuid

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from control_plane.db.models.base import Base, CreatedMixin, IdMixin
from control_plane.security.encryption import ENCRYPTED_COLUMNS


class SftpPassword(IdMixin, CreatedMixin, Base):
    __tablename__ = "sftp_passwords"
    __table_args__ = (UniqueConstraint("user_id", "server_id"),)

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    server_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("servers.id", ondelete="CASCADE"), index=True
    )
    secret: Mapped[str] = mapped_column(String(512))
    agent_hash: Mapped[str] = mapped_column(String(256))


ENCRYPTED_COLUMNS.append((SftpPassword, "secret"))
