"""Signed links work once: a link's id is recorded when it is used, and a second use finds
it (the primary key decides between two racing uses, on every database)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.models import SignedLinkUse


async def use_once(db: AsyncSession, jti: str, expires_at: dt.datetime) -> bool:
    """Record ``jti`` as used; False if it was used before. Ids of links that have expired
    anyway are swept (an expired link is refused before it gets here)."""
    now = dt.datetime.now(dt.UTC)
    await db.execute(delete(SignedLinkUse).where(SignedLinkUse.expires_at <= now))
    try:
        async with db.begin_nested():
            db.add(SignedLinkUse(jti=jti, expires_at=expires_at))
    except IntegrityError:
        return False
    return True
