"""A place nodes are in (a data centre, a region)."""

from __future__ import annotations

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from control_plane.db.models.base import Base, CreatedMixin, IdMixin
from control_plane.db.models.compat import CompatIdMixin


class Location(IdMixin, CreatedMixin, CompatIdMixin, Base):
    __tablename__ = "locations"

    code: Mapped[str] = mapped_column(String(32), unique=True)
    description: Mapped[str] = mapped_column(String(255), default="")
