"""How many wrong second-factor codes an account may give: counted per account, in the database.

The per-address rate limits cannot stop someone who holds the password and spreads guesses
over many addresses, so every account also has its own allowance of wrong codes (TOTP and
recovery codes, at sign-in and on the account's 2FA pages alike), whatever the address,
session or replica. It is kept as one row per wrong code in the database rather than in a
rate-limit bucket: it must outlive restarts and be shared by replicas that have no Redis.

A code is checked only under ``hold`` (a lock on the account's row), and a wrong one is
recorded in that same transaction, so parallel guesses are counted one after another and
never overshoot. While a window is full, no code is checked, not even a right one. A right
code forgives only the wrong codes given earlier in its own session (its owner's typos),
never those of other sign-ins.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Final

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.models import SecondFactorFailure, User
from control_plane.errors import Unauthenticated


@dataclass(frozen=True)
class Allowance:
    """At most ``failures`` wrong codes in any ``window``."""

    failures: int
    window: dt.timedelta


# A guess matches one of at most 3 codes (±1 step) of 10^6: p ≤ 3e-6. A burst of 5 per quarter
# hour for typos; 10 a day bounds a patient attacker to ~3,650 guesses a year (≤ 1.1 %),
# where 5 per quarter hour alone would allow 175,000 (~40 %).
ALLOWANCES: Final = (
    Allowance(5, dt.timedelta(minutes=15)),
    Allowance(10, dt.timedelta(hours=24)),
)
_LONGEST: Final = max(a.window for a in ALLOWANCES)


@dataclass(frozen=True)
class Lockout:
    """Codes for the account are refused until ``until``: ``allowance`` is used up."""

    until: dt.datetime
    allowance: Allowance


def lockout_at(failed_at: list[dt.datetime], now: dt.datetime) -> Lockout | None:
    """The lock that failures at ``failed_at`` (oldest first) impose at ``now``, if any."""
    found: Lockout | None = None
    for allowance in ALLOWANCES:
        recent = [t for t in failed_at if t > now - allowance.window]
        if len(recent) < allowance.failures:
            continue
        # Open again once all but failures - 1 of them have left the window.
        until = recent[len(recent) - allowance.failures] + allowance.window
        if found is None or until > found.until:
            found = Lockout(until, allowance)
    return found


async def hold(db: AsyncSession, user_id: uuid.UUID) -> None:
    """Lock the account's row until the transaction ends: its codes are checked one by one.

    (SQLite has no row locks; there every writing transaction holds the database's.)
    """
    found = await db.scalar(
        select(User.id).where(User.id == user_id).with_for_update(key_share=True)
    )
    if found is None:
        raise Unauthenticated("authentication required")


async def _failures(db: AsyncSession, user_id: uuid.UUID, now: dt.datetime) -> list[dt.datetime]:
    rows = await db.scalars(
        select(SecondFactorFailure.failed_at)
        .where(
            SecondFactorFailure.user_id == user_id,
            SecondFactorFailure.failed_at > now - _LONGEST,
        )
        .order_by(SecondFactorFailure.failed_at)
    )
    return list(rows)


async def current_lockout(db: AsyncSession, user_id: uuid.UUID, now: dt.datetime) -> Lockout | None:
    """The account's lock, if its wrong codes have used up an allowance."""
    return lockout_at(await _failures(db, user_id, now), now)


async def record_failure(
    db: AsyncSession, user_id: uuid.UUID, *, session_id: uuid.UUID | None, now: dt.datetime
) -> Lockout | None:
    """Count one wrong code; the lock it starts, if it used up an allowance."""
    # Failures older than every window count for nothing any more.
    await db.execute(
        delete(SecondFactorFailure).where(
            SecondFactorFailure.user_id == user_id, SecondFactorFailure.failed_at <= now - _LONGEST
        )
    )
    db.add(SecondFactorFailure(user_id=user_id, failed_at=now, session_id=session_id))
    await db.flush()
    return await current_lockout(db, user_id, now)


async def forgive_session(
    db: AsyncSession, user_id: uuid.UUID, session_id: uuid.UUID | None
) -> None:
    """After a right code: forget the wrong ones given earlier in the same session."""
    if session_id is None:
        return
    await db.execute(
        delete(SecondFactorFailure).where(
            SecondFactorFailure.user_id == user_id, SecondFactorFailure.session_id == session_id
        )
    )
