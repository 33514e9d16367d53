"""Signed links that have been used: each works once
(``control_plane/security/signed_links.py``)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from control_plane.db.models.base import Base


class SignedLinkUse(Base):
    """A used link's id; kept until the link would have expired anyway, then swept."""

    __tablename__ = "signed_link_uses"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[dt.datetime] = mapped_column(index=True)
