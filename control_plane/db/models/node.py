"""A game host running a node agent, and the ports it offers."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import BigInteger, ForeignKey, String, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column

from control_plane.db.models.base import Base, CreatedMixin, IdMixin
from control_plane.db.models.compat import CompatIdMixin


class Node(IdMixin, CreatedMixin, CompatIdMixin, Base):
    __tablename__ = "nodes"

    name: Mapped[str] = mapped_column(String(64), unique=True)
    url: Mapped[str] = mapped_column(String(255))
    location_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("locations.id", ondelete="RESTRICT"), default=None, index=True
    )
    # What the control plane may place on this node (MiB); servers' limits add up to at most this.
    memory_mib: Mapped[int] = mapped_column(default=0)
    disk_mib: Mapped[int] = mapped_column(default=0)
    # SHA-256 of the agent's TLS certificate, pinned by the control plane (issue: deploy).
    tls_fingerprint: Mapped[str | None] = mapped_column(String(95), default=None)
    status: Mapped[str] = mapped_column(String(16), default="unknown")
    last_seen_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    # The node's clock minus the control plane's, in seconds, as the last health poll that
    # heard the node's time measured it (None: never measured). See docs/faults.md.
    clock_offset_seconds: Mapped[float | None] = mapped_column(default=None)
    # The last version given to an SFTP access table pushed to this node (docs/sftp.md);
    # the node refuses any table older than the one it holds.
    sftp_access_version: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # The last version the node is known to hold (it took a push, or said so when polled).
    sftp_acked_version: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # The last audit-worthy event of the node's stream a follower applied, "<epoch>:<seq>"
    # (``shared.node_api.StreamStart``): the next follower resumes after it.
    events_cursor: Mapped[str | None] = mapped_column(String(40), default=None)


class Allocation(IdMixin, CompatIdMixin, Base):
    """One IP and port of a node; at most one server holds it. The server's users may note
    what a port is for and choose which of its ports is the main one (``SERVER_PORT``); both
    are cleared when the port is given to a server (a new holder never sees the last one's)."""

    __tablename__ = "allocations"
    __table_args__ = (UniqueConstraint("node_id", "ip", "port"),)

    node_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("nodes.id", ondelete="CASCADE"), index=True
    )
    ip: Mapped[str] = mapped_column(String(45))
    port: Mapped[int]
    server_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("servers.id", ondelete="SET NULL"), default=None, index=True
    )
    notes: Mapped[str | None] = mapped_column(String(255), default=None)
    # The server's main port (at most one of its allocations; none: the lowest is).
    is_primary: Mapped[bool] = mapped_column(default=False, server_default=false())
