"""Single-use mailed tokens: 256 random bits in the link, their SHA-256 in the database."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import uuid
from typing import Final, Literal

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.models import MailToken
from control_plane.errors import InvalidRequest

Purpose = Literal["verify", "reset"]
LIFETIMES: Final[dict[str, dt.timedelta]] = {
    "verify": dt.timedelta(hours=24),
    "reset": dt.timedelta(minutes=30),
}
# Every refusal says the same: which of unknown, used or expired is no one's business.
INVALID: Final = "this link is invalid, used or expired; ask for a new one"


def new_token() -> tuple[str, str]:
    """A token for a link and the hash to store."""
    token = secrets.token_urlsafe(32)
    return token, token_hash(token)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def issue(db: AsyncSession, *, user_id: uuid.UUID, purpose: Purpose, email: str) -> str:
    """A new token for ``user_id``; earlier unused ones of the same purpose stop working."""
    now = dt.datetime.now(dt.UTC)
    await db.execute(
        update(MailToken)
        .where(
            MailToken.user_id == user_id,
            MailToken.purpose == purpose,
            MailToken.used_at.is_(None),
        )
        .values(used_at=now)
    )
    token, digest = new_token()
    db.add(
        MailToken(
            user_id=user_id,
            purpose=purpose,
            token_hash=digest,
            email=email,
            expires_at=now + LIFETIMES[purpose],
        )
    )
    await db.flush()
    return token


async def peek(db: AsyncSession, token: str, purpose: Purpose) -> MailToken:
    """The live token (unused, unexpired) without using it, or 400."""
    if not 20 <= len(token) <= 128:
        raise InvalidRequest(INVALID)
    row = await db.scalar(
        select(MailToken).where(
            MailToken.token_hash == token_hash(token), MailToken.purpose == purpose
        )
    )
    if row is None or row.used_at is not None or row.expires_at <= dt.datetime.now(dt.UTC):
        raise InvalidRequest(INVALID)
    return row


async def use(db: AsyncSession, token: str, purpose: Purpose) -> MailToken:
    """Use the token once: of two requests racing with it, one gets it, the other 400."""
    row = await peek(db, token, purpose)
    used = await db.execute(
        update(MailToken)
        .where(MailToken.id == row.id, MailToken.used_at.is_(None))
        .values(used_at=dt.datetime.now(dt.UTC))
        .execution_options(synchronize_session=False)
    )
    if used.rowcount != 1:  # type: ignore[attr-defined]
        raise InvalidRequest(INVALID)
    return row
