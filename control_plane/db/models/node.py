"""A game host running a node agent."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from control_plane.db.models.base import Base, CreatedMixin, IdMixin


class Node(IdMixin, CreatedMixin, Base):
    __tablename__ = "nodes"

    name: Mapped[str] = mapped_column(String(64), unique=True)
    url: Mapped[str] = mapped_column(String(255))
    # SHA-256 of the agent's TLS certificate, pinned by the control plane (issue: deploy).
    tls_fingerprint: Mapped[str | None] = mapped_column(String(95), default=None)
    status: Mapped[str] = mapped_column(String(16), default="unknown")
    last_seen_at: Mapped[dt.datetime | None] = mapped_column(default=None)
