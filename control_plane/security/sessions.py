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
from typing import Any, Final

from sqlalchemy import (
    ColumnElement,
    Row,
    Select,
    and_,
    bindparam,
    delete,
    not_,
    or_,
    select,
    update,
)
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.models import LoginChallenge, MailToken, Session, User
from control_plane.db.models.listing import listing_versions
from control_plane.db.reader import StatementReader
from control_plane.services.mfa import second_factor_enrolled

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


# Built once: the session, its user and the user's second factors in one statement; for a
# route that answers kept lists, with the lists' versions in the same snapshot (a kept list
# is answered only at its version; the others do not pay for reading them).
_SESSION_READ: Final = select(
    Session.id,
    Session.last_seen_at,
    Session.expires_at,
    Session.mfa_pending,
    User.id.label("user_id"),
    User.email,
    User.is_admin,
    User.disabled,
    User.email_verified_at,
    second_factor_enrolled(User.id).label("second_factor"),
).join(User, User.id == Session.user_id)
_SESSION_LOOKUP: Final = _SESSION_READ.where(Session.token_hash == bindparam("token_hash"))
_SESSION_LOOKUP_LISTING: Final = _SESSION_LOOKUP.add_columns(*listing_versions(User.id))
_SESSION_BY_ID: Final = _SESSION_READ.where(Session.id == bindparam("session_id"))


@dataclass(frozen=True)
class SessionLookup:
    """A cookie's session as read (nothing written): live, or to be ended."""

    session_id: uuid.UUID
    # A password was right but a second factor is still owed.
    mfa_pending: bool
    user_id: uuid.UUID
    email: str
    is_admin: bool
    # Whether the user has enrolled a second factor (for STELLAR_REQUIRE_2FA).
    second_factor: bool
    # Whether the user's address was proven by a mailed link.
    email_verified: bool
    live: bool
    # A live session whose last_seen_at is old enough to record this request.
    touch: bool
    # The lists' versions in the snapshot that read the session (``models/listing.py``):
    # the administrators' and the user's (None unless the lookup was asked for them).
    listing_version: int | None = None
    user_listing_version: int | None = None


async def lookup_session(
    reader: StatementReader,
    *,
    secret: str,
    token: str,
    idle: dt.timedelta,
    listing: bool = False,
) -> SessionLookup | None:
    """Read the session for a cookie token (one statement); the caller writes what it says.
    With ``listing``, the lists' versions too."""
    if not 20 <= len(token) <= 128:
        return None
    statement: Select[*tuple[Any, ...]] = _SESSION_LOOKUP_LISTING if listing else _SESSION_LOOKUP
    rows = await reader.one_row(statement, {"token_hash": token_hash(secret, token)})
    return _lookup(rows[0], idle, listing=listing) if rows else None


async def session_by_id(
    reader: StatementReader, session_id: uuid.UUID, *, idle: dt.timedelta
) -> SessionLookup | None:
    """The session with this id as read (a console token reads its session again this way)."""
    rows = await reader.one_row(_SESSION_BY_ID, {"session_id": session_id})
    return _lookup(rows[0], idle) if rows else None


def _lookup(
    row: Row[*tuple[Any, ...]], idle: dt.timedelta, *, listing: bool = False
) -> SessionLookup:
    now = dt.datetime.now(dt.UTC)
    live = not (row.disabled or row.expires_at <= now or row.last_seen_at + idle <= now)
    return SessionLookup(
        session_id=row.id,
        mfa_pending=row.mfa_pending,
        user_id=row.user_id,
        email=row.email,
        is_admin=row.is_admin,
        second_factor=row.second_factor,
        email_verified=row.email_verified_at is not None,
        live=live,
        touch=live and now - row.last_seen_at >= TOUCH_INTERVAL,
        listing_version=row.listing_version if listing else None,
        user_listing_version=row.user_listing_version if listing else None,
    )


async def touch_session(db: AsyncSession, session_id: uuid.UUID) -> None:
    await db.execute(
        update(Session).where(Session.id == session_id).values(last_seen_at=dt.datetime.now(dt.UTC))
    )


async def end_session(db: AsyncSession, session_id: uuid.UUID) -> bool:
    """End one session; whether it was still there (another request may have ended it)."""
    result = await db.execute(delete(Session).where(Session.id == session_id))
    return isinstance(result, CursorResult) and result.rowcount == 1


async def end_all_sessions(db: AsyncSession, user_id: uuid.UUID) -> int:
    """End every session of the user, and drop what those sessions had started and not
    finished: a provider link or passkey registration (``LoginChallenge`` rows of the user)
    and a change of address whose link went to the new address (an unused verification
    token for another address than the account's). Whoever held a session may have started
    them — this is how a password change, a reset, disabling or an administrator takes an
    account back. Unused password-reset links go too, and every browser that signed in as
    the user is a stranger to the account again (``User.sessions_ended_at``: its device
    cookie no longer has an allowance of password tries of its own). How many sessions
    there were."""
    now = dt.datetime.now(dt.UTC)
    await db.execute(update(User).where(User.id == user_id).values(sessions_ended_at=now))
    await db.execute(delete(LoginChallenge).where(LoginChallenge.user_id == user_id))
    current = select(User.email).where(User.id == user_id).scalar_subquery()
    await db.execute(
        update(MailToken)
        .where(
            MailToken.user_id == user_id,
            MailToken.used_at.is_(None),
            or_(
                and_(MailToken.purpose == "verify", MailToken.email != current),
                # A reset link kept by someone who had a moment in the mailbox.
                MailToken.purpose == "reset",
            ),
        )
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    result = await db.execute(delete(Session).where(Session.user_id == user_id))
    return result.rowcount if isinstance(result, CursorResult) else 0


def _live(now: dt.datetime, idle: dt.timedelta) -> ColumnElement[bool]:
    """A session that signs in: neither past its absolute end nor idle too long (as
    ``_lookup`` decides for a cookie)."""
    return and_(Session.expires_at > now, Session.last_seen_at > now - idle)


async def live_sessions(db: AsyncSession, user_id: uuid.UUID, idle: dt.timedelta) -> list[Session]:
    """The user's sessions that would still sign in, newest first."""
    rows = await db.scalars(
        select(Session)
        .where(Session.user_id == user_id, _live(dt.datetime.now(dt.UTC), idle))
        .order_by(Session.created_at.desc())
    )
    return list(rows)


SWEEP_BATCH: Final = 1000


async def sweep_ended(db: AsyncSession, now: dt.datetime, idle: dt.timedelta) -> int:
    """Delete up to ``SWEEP_BATCH`` sessions that sign in no more (a browser that never came
    back leaves its row behind: its cookie would be refused, and the row is ended when
    presented); how many. Rows another transaction holds (ending a user's sessions) are
    skipped, not waited for: PostgreSQL's ``SKIP LOCKED`` (SQLite's writers take turns)."""
    ended = (
        select(Session.id)
        .where(not_(_live(now, idle)))
        .limit(SWEEP_BATCH)
        .with_for_update(skip_locked=True)
    )
    result = await db.execute(delete(Session).where(Session.id.in_(ended.scalar_subquery())))
    return result.rowcount if isinstance(result, CursorResult) else 0
