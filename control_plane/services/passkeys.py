"""Passkeys of an account: stored public keys, their names and signature counters."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import delete, func, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.models import PasskeyCredential, User
from control_plane.errors import Conflict, NotFound
from control_plane.security.passkeys import RegisteredPasskey
from control_plane.services import oauth as oauth_service


async def of_user(db: AsyncSession, user_id: uuid.UUID) -> list[PasskeyCredential]:
    rows = await db.scalars(
        select(PasskeyCredential)
        .where(PasskeyCredential.user_id == user_id)
        .order_by(PasskeyCredential.created_at)
    )
    return list(rows)


async def add(
    db: AsyncSession, user_id: uuid.UUID, passkey: RegisteredPasskey, *, name: str
) -> PasskeyCredential:
    """Store a verified passkey; 409 if this authenticator credential is registered already."""
    taken = await db.scalar(
        select(PasskeyCredential.id).where(PasskeyCredential.credential_id == passkey.credential_id)
    )
    if taken is not None:
        raise Conflict("this passkey is registered already")
    row = PasskeyCredential(
        user_id=user_id,
        credential_id=passkey.credential_id,
        public_key=passkey.public_key,
        sign_count=passkey.sign_count,
        name=name,
        transports=passkey.transports,
    )
    db.add(row)
    await db.flush()
    return row


async def owned(db: AsyncSession, user_id: uuid.UUID, passkey_id: uuid.UUID) -> PasskeyCredential:
    """The user's passkey with this id; 404 for anyone else's."""
    row = await db.get(PasskeyCredential, passkey_id)
    if row is None or row.user_id != user_id:
        raise NotFound("no such passkey")
    return row


async def remove(db: AsyncSession, user: User, passkey: PasskeyCredential) -> None:
    """Delete a passkey, unless it is the user's last way to sign in (404 if a removal at
    the same moment took it first: found again after the count's lock)."""
    methods = await oauth_service.sign_in_methods(db, user)  # first: it locks the count
    still = await db.scalar(select(PasskeyCredential.id).where(PasskeyCredential.id == passkey.id))
    if still is None:  # a removal at the same moment took it first
        raise NotFound("no such passkey")
    if methods <= 1:
        raise Conflict("this is your only way to sign in: set a password or add another first")
    await db.execute(
        delete(PasskeyCredential)
        .where(PasskeyCredential.id == passkey.id)
        .execution_options(synchronize_session=False)
    )


async def remove_all(db: AsyncSession, user: User) -> int:
    """Delete every passkey of ``user`` (an administrator's answer to lost or stolen
    authenticators); how many. Refused when nothing is there, and when passkeys are the
    user's only way to sign in (removing them would lock the user out for good). API keys
    and linked sign-in accounts stay: an account an intruder may have used is disabled."""
    methods = await oauth_service.sign_in_methods(db, user)  # first: it locks the count
    count = await db.scalar(
        select(func.count())
        .select_from(PasskeyCredential)
        .where(PasskeyCredential.user_id == user.id)
    )
    if not count:
        raise Conflict(f"{user.email} has no passkey: nothing to remove")
    if methods <= count:
        if user.disabled:
            raise Conflict(
                f"passkeys are {user.email}'s only way to sign in, and the account is"
                " disabled: it refuses them already"
            )
        raise Conflict(
            f"passkeys are {user.email}'s only way to sign in: disable the account instead,"
            " or have them set a password or link an account first"
        )
    result = await db.execute(delete(PasskeyCredential).where(PasskeyCredential.user_id == user.id))
    return result.rowcount if isinstance(result, CursorResult) else int(count)


async def counts(db: AsyncSession, user_ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
    """How many passkeys each of these users has (those with none are left out)."""
    if not user_ids:
        return {}
    rows = await db.execute(
        select(PasskeyCredential.user_id, func.count())
        .where(PasskeyCredential.user_id.in_(user_ids))
        .group_by(PasskeyCredential.user_id)
    )
    return {user_id: int(count) for user_id, count in rows}


async def by_credential_id(db: AsyncSession, credential_id: str) -> PasskeyCredential | None:
    return await db.scalar(
        select(PasskeyCredential).where(PasskeyCredential.credential_id == credential_id)
    )


async def record_use(db: AsyncSession, passkey: PasskeyCredential, new_count: int) -> bool:
    """Store the new counter unless another sign-in moved it meanwhile (then False)."""
    result = await db.execute(
        update(PasskeyCredential)
        .where(
            PasskeyCredential.id == passkey.id,
            PasskeyCredential.sign_count == passkey.sign_count,
        )
        .values(sign_count=new_count, last_used_at=dt.datetime.now(dt.UTC))
        .execution_options(synchronize_session=False)
    )
    return isinstance(result, CursorResult) and result.rowcount == 1
