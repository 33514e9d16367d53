"""A game server: owned by a user, placed on a node, shaped by a blueprint."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import JSON, ForeignKey, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from control_plane.db.models.base import Base, CreatedMixin, IdMixin, ListedRowMixin
from control_plane.db.models.compat import CompatIdMixin, ShortIdentifierMixin


class Server(IdMixin, CreatedMixin, CompatIdMixin, ShortIdentifierMixin, ListedRowMixin, Base):
    __tablename__ = "servers"

    name: Mapped[str] = mapped_column(String(64))
    owner_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="RESTRICT"), index=True
    )
    node_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("nodes.id", ondelete="RESTRICT"), index=True
    )
    blueprint_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("blueprints.id", ondelete="RESTRICT")
    )
    image: Mapped[str] = mapped_column(String(255))
    memory_mib: Mapped[int]
    swap_mib: Mapped[int] = mapped_column(default=0)
    cpu_percent: Mapped[int]
    disk_mib: Mapped[int]
    pids_limit: Mapped[int] = mapped_column(default=512)
    # Blueprint variable values by environment name.
    variables: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    # Last state the node reported: installing, offline, starting, running, stopping, crashed;
    # "provisioning" until the node has accepted the create command, "failed" if it did not.
    state: Mapped[str] = mapped_column(String(16), default="provisioning")
    suspended: Mapped[bool] = mapped_column(default=False)
    # The last install as the node reported it: exit code, seconds, its last lines, and why
    # it failed when the exit code does not say (timed out …).
    install_exit_code: Mapped[int | None] = mapped_column(default=None)
    install_seconds: Mapped[float | None] = mapped_column(default=None)
    install_output: Mapped[list[str] | None] = mapped_column(JSON, default=None)
    install_reason: Mapped[str | None] = mapped_column(String(255), default=None)
    # The Pterodactyl-compatible API: the billing system's id, a description, and what it
    # sends that has no meaning here, kept and echoed (io, threads, feature limits …).
    external_id: Mapped[str | None] = mapped_column(
        String(191), unique=True, index=True, default=None
    )
    description: Mapped[str] = mapped_column(Text, default="", server_default=text("''"))
    compat_fields: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    # The revision of the last spec sent to the node (``ServerSpec.revision``): raised,
    # under this row's lock, before every send (``services/servers/spec_changes.py``).
    spec_revision: Mapped[int] = mapped_column(default=0, server_default=text("0"))
    # How many ports the server's users may hold in all, the main one included, taking free
    # ones of the node and giving them back (``allocations.create``/``.delete``); 0: only an
    # administrator changes which ports it has (Pterodactyl's ``allocation_limit``).
    port_limit: Mapped[int] = mapped_column(default=0, server_default=text("0"))


class Subuser(IdMixin, CreatedMixin, ListedRowMixin, Base):
    """Another user's access to a server, limited to a set of permission nodes."""

    __tablename__ = "subusers"
    __table_args__ = (UniqueConstraint("server_id", "user_id"),)

    server_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("servers.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    permissions: Mapped[list[str]] = mapped_column(JSON)
