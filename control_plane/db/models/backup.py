"""Backups of a server's files, made and kept by its node, encrypted with the server's key."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import JSON, BigInteger, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from control_plane.db.models.base import Base, CreatedMixin, IdMixin
from control_plane.security.encryption import ENCRYPTED_COLUMNS


class Backup(IdMixin, CreatedMixin, Base):
    __tablename__ = "backups"

    server_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("servers.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(64))
    # running → completed | failed; exactly what the node reported last, never guessed.
    status: Mapped[str] = mapped_column(String(16), default="running")
    reason: Mapped[str | None] = mapped_column(Text, default=None)
    locked: Mapped[bool] = mapped_column(default=False)
    ignore: Mapped[list[str]] = mapped_column(JSON, default=list)
    # The .tar.gz a download gives (the node decrypts nothing; the control plane does, on
    # the way to the user), and the encrypted file the node keeps.
    size_bytes: Mapped[int | None] = mapped_column(BigInteger, default=None)
    sha256: Mapped[str | None] = mapped_column(String(64), default=None)
    stored_bytes: Mapped[int | None] = mapped_column(BigInteger, default=None)
    finished_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class ServerBackupKey(IdMixin, Base):
    """The server's AES-256 backup key, encrypted at rest; sent to the node with each command."""

    __tablename__ = "server_backup_keys"

    server_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("servers.id", ondelete="CASCADE"), unique=True
    )
    key: Mapped[str] = mapped_column(Text)


ENCRYPTED_COLUMNS.append((ServerBackupKey, "key"))
