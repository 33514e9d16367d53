"""Sign-in with an external provider, and short-lived challenges bound to one browser.

An identity is the pair (provider, subject): the provider's stable account id, never an
e-mail address. A challenge holds what a multi-step sign-in must remember between two requests
(OAuth ``state``, PKCE verifier and nonce; WebAuthn challenges); it is found by the hash of
its lookup value and only honoured for the browser whose cookie hashes to ``binding_hash``.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import JSON, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from control_plane.db.models.base import Base, CreatedMixin, IdMixin


class OAuthIdentity(IdMixin, CreatedMixin, Base):
    __tablename__ = "oauth_identities"
    __table_args__ = (
        UniqueConstraint("provider", "subject"),
        # One account per provider and user keeps unlinking unambiguous.
        UniqueConstraint("user_id", "provider"),
    )

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    provider: Mapped[str] = mapped_column(String(16))
    subject: Mapped[str] = mapped_column(String(255))
    # As the provider reported it when linked; shown to the user, never used to find them.
    email: Mapped[str | None] = mapped_column(String(254), default=None)


class LoginChallenge(IdMixin, CreatedMixin, Base):
    __tablename__ = "login_challenges"

    kind: Mapped[str] = mapped_column(String(32))
    lookup_hash: Mapped[str] = mapped_column(String(64), unique=True)
    binding_hash: Mapped[str] = mapped_column(String(64))
    # Set when a signed-in user links a provider or registers a passkey.
    user_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), default=None
    )
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    expires_at: Mapped[dt.datetime]
