"""Browser sessions: opaque 256-bit tokens in an HttpOnly cookie, stored as keyed hashes.

The stored hash is an HMAC under the auth secret, so rotating ``STELLAR_AUTH_SECRET`` ends
every session at once (documented: everyone logs in again). The CSRF token of a session is
derived from its id under the same secret and never stored.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.models import Session, User

COOKIE = "stellar_session"
SECURE_COOKIE = "__Host-stellar_session"
# last_seen_at is written at most this often, not on every request.
TOUCH_INTERVAL = dt.timedelta(seconds=60)


def cookie_name(secure: bool) -> str:
    return SECURE_COOKIE if secure else COOKIE


def token_hash(secret: str, token: str) -> str:
    return hmac.new(secret.encode(), b"session:" + token.encode(), hashlib.sha256).hexdigest()


def csrf_token(secret: str, session_id: uuid.UUID) -> str:
    digest = hmac.new(secret.encode(), b"csrf:" + session_id.bytes, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def csrf_matches(secret: str, session_id: uuid.UUID, presented: str | None) -> bool:
    return bool(presented) and hmac.compare_digest(csrf_token(secret, session_id), presented or "")


async def open_session(
    db: AsyncSession,
    *,
    secret: str,
    user: User,
    ip: str,
    user_agent: str,
    max_age: dt.timedelta,
    mfa_pending: bool = False,
) -> tuple[Session, str]:
    """Create a session; return it and the token for the cookie (never stored)."""
    token = secrets.token_urlsafe(32)
    now = dt.datetime.now(dt.UTC)
    session = Session(
        user_id=user.id,
        token_hash=token_hash(secret, token),
        last_seen_at=now,
        expires_at=now + max_age,
        ip=ip,
        user_agent=user_agent[:255],
        mfa_pending=mfa_pending,
    )
    db.add(session)
    await db.flush()
    return session, token


@dataclass(frozen=True)
class SessionLookup:
    """A cookie's session as read (nothing written): live, or to be ended."""

    session: Session
    user: User
    live: bool
    # A live session whose last_seen_at is old enough to record this request.
    touch: bool


async def lookup_session(
    db: AsyncSession, *, secret: str, token: str, idle: dt.timedelta
) -> SessionLookup | None:
    """Read the session for a cookie token; the caller writes what the lookup says."""
    if not 20 <= len(token) <= 128:
        return None
    row = (
        await db.execute(
            select(Session, User)
            .join(User, User.id == Session.user_id)
            .where(Session.token_hash == token_hash(secret, token))
        )
    ).first()
    if row is None:
        return None
    session, user = row[0], row[1]
    now = dt.datetime.now(dt.UTC)
    live = not (user.disabled or session.expires_at <= now or session.last_seen_at + idle <= now)
    return SessionLookup(session, user, live, live and now - session.last_seen_at >= TOUCH_INTERVAL)


async def touch_session(db: AsyncSession, session_id: uuid.UUID) -> None:
    await db.execute(
        update(Session).where(Session.id == session_id).values(last_seen_at=dt.datetime.now(dt.UTC))
    )


async def end_session(db: AsyncSession, session_id: uuid.UUID) -> None:
    await db.execute(delete(Session).where(Session.id == session_id))


async def end_all_sessions(db: AsyncSession, user_id: uuid.UUID) -> None:
    await db.execute(delete(Session).where(Session.user_id == user_id))
