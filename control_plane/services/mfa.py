"""Second factors of an account: TOTP enrolment, verification, recovery codes and policy.

Every code is consumed atomically: the accepted TOTP step and a recovery code's use are each
recorded with one conditional UPDATE, so two requests racing with the same code cannot both
succeed.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Final, Literal

from sqlalchemy import ColumnElement, Uuid, delete, exists, func, literal, or_, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import QueryableAttribute

from control_plane.db.models import PasskeyCredential, RecoveryCode, TotpCredential, User
from control_plane.errors import Conflict
from control_plane.security import totp
from control_plane.security.encryption import SecretBox

Policy = Literal["none", "admins", "everyone"]


async def _credential(db: AsyncSession, user_id: uuid.UUID) -> TotpCredential | None:
    return await db.scalar(select(TotpCredential).where(TotpCredential.user_id == user_id))


async def active_credential(db: AsyncSession, user_id: uuid.UUID) -> TotpCredential | None:
    """The user's enabled TOTP credential, if any."""
    credential = await _credential(db, user_id)
    return credential if credential and credential.enabled_at else None


async def second_factor_methods(db: AsyncSession, user_id: uuid.UUID) -> list[str]:
    """How this user can complete a sign-in after the password; empty if no 2FA."""
    return ["totp", "recovery"] if await active_credential(db, user_id) else []


def policy_applies(is_admin: bool, policy: Policy) -> bool:
    """Whether STELLAR_REQUIRE_2FA asks this user (an administrator or not) for a second factor."""
    return policy == "everyone" or (policy == "admins" and is_admin)


def second_factor_enrolled(
    user_id: ColumnElement[uuid.UUID] | QueryableAttribute[uuid.UUID],
) -> ColumnElement[bool]:
    """SQL: whether the user has an enabled authenticator or a passkey.

    A user-verified passkey is a multi-factor credential of its own.
    """
    authenticator = exists().where(
        TotpCredential.user_id == user_id, TotpCredential.enabled_at.is_not(None)
    )
    return or_(authenticator, exists().where(PasskeyCredential.user_id == user_id))


PASSKEY_IS_THE_SECOND_FACTOR: Final = (
    "this panel requires a second factor and this account's is its passkey: sign in with the "
    "passkey (or set up an authenticator app too, to sign in with the password and a code)"
)


async def passkey_is_the_second_factor(db: AsyncSession, user: User, policy: Policy) -> bool:
    """Whether a sign-in by password (or by a provider that does not skip 2FA) must be
    refused: the policy asks this user for a second factor, and it is a passkey (no
    authenticator), which the password path cannot ask for. The policy counts the passkey
    as enrolled, so without this the password alone opened a session."""
    if not policy_applies(user.is_admin, policy) or await active_credential(db, user.id):
        return False
    return bool(await db.scalar(select(exists().where(PasskeyCredential.user_id == user.id))))


def enrolment_owed(is_admin: bool, enrolled: bool, policy: Policy) -> bool:
    """Whether the policy demands a second factor that the user has not enrolled yet."""
    return policy_applies(is_admin, policy) and not enrolled


async def enrolment_required(db: AsyncSession, user: User, policy: Policy) -> bool:
    """Whether the policy demands a second factor this user has not enrolled yet."""
    if not policy_applies(user.is_admin, policy):
        return False
    enrolled = await db.scalar(select(second_factor_enrolled(literal(user.id, Uuid()))))
    return enrolment_owed(user.is_admin, bool(enrolled), policy)


async def remaining_recovery_codes(db: AsyncSession, user_id: uuid.UUID) -> int:
    count = await db.scalar(
        select(func.count())
        .select_from(RecoveryCode)
        .where(RecoveryCode.user_id == user_id, RecoveryCode.used_at.is_(None))
    )
    return int(count or 0)


async def begin_setup(
    db: AsyncSession, box: SecretBox, user: User, *, issuer: str
) -> totp.Enrolment:
    """A new inactive secret for ``user`` (replacing an unfinished one); 409 if 2FA is on."""
    credential = await _credential(db, user.id)
    if credential is not None and credential.enabled_at is not None:
        raise Conflict("two-factor authentication is already on; disable it first")
    if credential is not None:
        await db.delete(credential)
        await db.flush()
    secret = totp.generate_secret()
    credential = TotpCredential(user_id=user.id)
    box.seal(credential, "secret", secret)
    db.add(credential)
    await db.flush()
    return totp.enrolment(secret, account=user.email, issuer=issuer)


async def _consume_step(
    db: AsyncSession, box: SecretBox, credential: TotpCredential, code: str, unix_time: float
) -> bool:
    secret = box.unseal(credential, "secret") or ""
    step = totp.matching_step(secret, code, unix_time=unix_time, last_step=credential.last_step)
    if step is None:
        return False
    newer = TotpCredential.last_step.is_(None) | (TotpCredential.last_step < step)
    result = await db.execute(
        update(TotpCredential)
        .where(TotpCredential.id == credential.id, newer)
        .values(last_step=step)
        .execution_options(synchronize_session=False)
    )
    accepted = isinstance(result, CursorResult) and result.rowcount == 1
    if accepted:
        credential.last_step = step
    return accepted


async def verify_totp(
    db: AsyncSession, box: SecretBox, user_id: uuid.UUID, code: str, *, unix_time: float
) -> bool:
    """Whether ``code`` is a fresh valid code of the user's enabled authenticator (consumed)."""
    credential = await active_credential(db, user_id)
    return credential is not None and await _consume_step(db, box, credential, code, unix_time)


async def redeem_recovery_code(db: AsyncSession, user_id: uuid.UUID, code: str) -> bool:
    """Whether ``code`` is an unused recovery code of the user; it is used up if so."""
    if await active_credential(db, user_id) is None:
        return False
    result = await db.execute(
        update(RecoveryCode)
        .where(
            RecoveryCode.user_id == user_id,
            RecoveryCode.code_hash == totp.recovery_code_hash(code),
            RecoveryCode.used_at.is_(None),
        )
        .values(used_at=dt.datetime.now(dt.UTC))
        .execution_options(synchronize_session=False)
    )
    return isinstance(result, CursorResult) and result.rowcount == 1


async def verify_any_code(
    db: AsyncSession, box: SecretBox, user_id: uuid.UUID, code: str, *, unix_time: float
) -> str | None:
    """``"totp"`` or ``"recovery"`` for whichever kind ``code`` is and verifies; else None."""
    if code.strip().isdigit():
        return "totp" if await verify_totp(db, box, user_id, code, unix_time=unix_time) else None
    return "recovery" if await redeem_recovery_code(db, user_id, code) else None


async def replace_recovery_codes(db: AsyncSession, user_id: uuid.UUID) -> list[str]:
    """Fresh recovery codes for the user; every earlier one stops working."""
    await db.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
    codes = totp.generate_recovery_codes()
    db.add_all(RecoveryCode(user_id=user_id, code_hash=totp.recovery_code_hash(c)) for c in codes)
    await db.flush()
    return codes


async def enable(
    db: AsyncSession, box: SecretBox, user_id: uuid.UUID, code: str, *, unix_time: float
) -> list[str] | None:
    """Activate the set-up secret if ``code`` matches; the new recovery codes, else None."""
    credential = await _credential(db, user_id)
    if credential is None:
        raise Conflict("start with the setup step: there is no authenticator to enable")
    if credential.enabled_at is not None:
        raise Conflict("two-factor authentication is already on")
    if not await _consume_step(db, box, credential, code, unix_time):
        return None
    credential.enabled_at = dt.datetime.now(dt.UTC)
    return await replace_recovery_codes(db, user_id)


async def disable(db: AsyncSession, user_id: uuid.UUID) -> None:
    """Remove the authenticator and every recovery code of the user."""
    await db.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
    await db.execute(delete(TotpCredential).where(TotpCredential.user_id == user_id))


async def setup_pending(db: AsyncSession, user_id: uuid.UUID) -> bool:
    """Whether a secret was set up but not yet confirmed with a code."""
    credential = await _credential(db, user_id)
    return credential is not None and credential.enabled_at is None


async def users_with_totp(db: AsyncSession, user_ids: list[uuid.UUID]) -> set[uuid.UUID]:
    """Which of these users have an enabled authenticator."""
    if not user_ids:
        return set()
    rows = await db.scalars(
        select(TotpCredential.user_id).where(
            TotpCredential.user_id.in_(user_ids), TotpCredential.enabled_at.is_not(None)
        )
    )
    return set(rows)
