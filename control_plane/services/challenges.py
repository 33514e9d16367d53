"""Short-lived, single-use state of a multi-step sign-in, bound to one browser.

A challenge is found by the hash of its lookup value (the OAuth ``state``, or the browser's
binding cookie for WebAuthn) and honoured only when the presenting browser's binding cookie
hashes to what was stored: a state or challenge copied to another browser is worthless.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import uuid
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.models import LoginChallenge


def _hash(value: str) -> str:
    return hashlib.sha256(b"challenge:" + value.encode()).hexdigest()


async def create(
    db: AsyncSession,
    *,
    kind: str,
    lookup: str,
    binding: str,
    ttl: dt.timedelta,
    data: dict[str, Any],
    user_id: uuid.UUID | None = None,
) -> LoginChallenge:
    """Store a challenge (replacing one with the same lookup); expired ones are swept."""
    now = dt.datetime.now(dt.UTC)
    await db.execute(delete(LoginChallenge).where(LoginChallenge.expires_at <= now))
    await db.execute(delete(LoginChallenge).where(LoginChallenge.lookup_hash == _hash(lookup)))
    challenge = LoginChallenge(
        kind=kind,
        lookup_hash=_hash(lookup),
        binding_hash=_hash(binding),
        user_id=user_id,
        data=data,
        expires_at=now + ttl,
    )
    db.add(challenge)
    await db.flush()
    return challenge


async def find(
    db: AsyncSession, *, kind: str, lookup: str, binding: str | None
) -> LoginChallenge | None:
    """The live challenge of this kind for ``lookup``, if ``binding`` is the browser's."""
    challenge = await db.scalar(
        select(LoginChallenge).where(LoginChallenge.lookup_hash == _hash(lookup))
    )
    if challenge is None or challenge.kind != kind or binding is None:
        return None
    if not hmac.compare_digest(challenge.binding_hash, _hash(binding)):
        return None
    if challenge.expires_at <= dt.datetime.now(dt.UTC):
        return None
    return challenge


async def consume(db: AsyncSession, challenge: LoginChallenge) -> bool:
    """Delete the challenge; False if another request used it first."""
    result = await db.execute(
        delete(LoginChallenge)
        .where(LoginChallenge.id == challenge.id)
        .execution_options(synchronize_session=False)
    )
    return isinstance(result, CursorResult) and result.rowcount == 1
