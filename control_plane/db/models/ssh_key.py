"""SSH public keys of an account, for SFTP (docs/sftp.md). Public, so stored as given."""

from __future__ import annotations

import uuid

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from control_plane.db.models.base import Base, CreatedMixin, IdMixin


class SshKey(IdMixin, CreatedMixin, Base):
    __tablename__ = "ssh_keys"
    __table_args__ = (UniqueConstraint("user_id", "fingerprint"),)

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(64))
    # "<algorithm> <base64 blob>", the comment dropped.
    public_key: Mapped[str] = mapped_column(String(4096))
    # "SHA256:<base64 without padding>", as OpenSSH shows it.
    fingerprint: Mapped[str] = mapped_column(String(64))
