"""A blueprint (an "egg"): how to install and run one kind of game server."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, String, Text, false, text
from sqlalchemy.orm import Mapped, mapped_column

from control_plane.db.models.base import Base, CreatedMixin, IdMixin
from control_plane.db.models.compat import CompatIdMixin


class Blueprint(IdMixin, CreatedMixin, CompatIdMixin, Base):
    __tablename__ = "blueprints"

    name: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    # [{"name": "Java 21", "image": "ghcr.io/…"}]; the first is the default.
    images: Mapped[list[dict[str, str]]] = mapped_column(JSON)
    startup: Mapped[str] = mapped_column(Text)
    stop: Mapped[dict[str, Any]] = mapped_column(JSON)
    # Seconds the game has to exit after ``stop`` before it is killed.
    stop_timeout_seconds: Mapped[int] = mapped_column(default=30, server_default=text("30"))
    install: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    variables: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    read_only_root: Mapped[bool] = mapped_column(default=True)
    # gitignore-style patterns no file operation may touch.
    file_denylist: Mapped[list[str]] = mapped_column(JSON, default=list)
    # [{"path": "server.properties", "parser": "properties", "replace": [...]}]
    # (shared.server_spec.ConfigFile), applied by the agent before each start.
    config_files: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    # Console text that says the game is up; empty: up once its container runs.
    startup_done: Mapped[list[str]] = mapped_column(JSON, default=list)
    # True: the image's own command runs and reads STARTUP (images made for eggs).
    image_command: Mapped[bool] = mapped_column(default=False, server_default=false())
    # An egg's "features" (eula, java_version …), kept for export and for the panel.
    features: Mapped[list[str]] = mapped_column(JSON, default=list)
    # The uuid of the egg this blueprint was imported from: importing it again updates it.
    egg_uuid: Mapped[str | None] = mapped_column(String(36), unique=True, index=True, default=None)
    author: Mapped[str] = mapped_column(String(255), default="")
