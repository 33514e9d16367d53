"""Accounts: creation and look-up."""

from __future__ import annotations

import datetime as dt
import re

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.models import User
from control_plane.errors import Conflict, InvalidRequest
from control_plane.security.passwords import hash_password, password_problem
from control_plane.security.sessions import end_all_sessions

# One address, in the form mail is sent to: RFC 5322's dot-atom local part and a DNS name (an
# internationalised one in its ASCII form). Nothing that a mail header could read as a second
# recipient, a display name or a comment (",", ";", "<", quotes, parentheses, spaces).
_EMAIL = re.compile(
    r"[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{2,63}"
)


def normalise_email(email: str) -> str:
    email = email.strip().lower()
    if len(email) > 254 or _EMAIL.fullmatch(email) is None:
        raise InvalidRequest(f"{email!r} is not an e-mail address")
    return email


async def username_for(session: AsyncSession, email: str) -> str:
    """A free account name from the e-mail's local part: ``[a-z0-9_-]``, a number on a clash
    (the rule migration 0010 applied to the users before it)."""
    base = re.sub(r"[^a-z0-9_-]", "", email.split("@", 1)[0].lower())[:24] or "user"
    taken = set(
        await session.scalars(
            select(User.username).where(User.username.startswith(base, autoescape=True))
        )
    )
    name, number = base, 1
    while name in taken:
        number += 1
        name = f"{base}{number}"
    return name


async def create_user(
    session: AsyncSession,
    *,
    email: str,
    password: str,
    is_admin: bool,
    bcrypt_cost: int,
    verified: bool = True,
) -> User:
    """A new account. ``verified``: whoever creates it vouches for the address (an
    administrator); self-registration passes False and mails a link (docs/email.md)."""
    problem = password_problem(password)
    if problem:
        raise InvalidRequest(f"password: {problem}")
    address = normalise_email(email)
    user = User(
        email=address,
        username=await username_for(session, address),
        password_hash=await hash_password(password, bcrypt_cost),
        is_admin=is_admin,
        email_verified_at=dt.datetime.now(dt.UTC) if verified else None,
    )
    session.add(user)
    try:
        await session.flush()
    except IntegrityError as err:
        raise Conflict(f"a user with e-mail {user.email!r} exists already") from err
    return user


async def user_page(
    session: AsyncSession, *, search: str | None, offset: int, limit: int
) -> tuple[list[User], int]:
    """One page of accounts by e-mail (those whose address contains ``search``, any case),
    and how many match in all."""
    where = [User.email.contains(search.strip().lower(), autoescape=True)] if search else []
    total = await session.scalar(select(func.count()).select_from(User).where(*where)) or 0
    rows = await session.scalars(
        select(User).where(*where).order_by(User.email).offset(offset).limit(limit)
    )
    return list(rows), int(total)


async def count_admins(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.count()).where(User.is_admin.is_(True))) or 0)


async def keep_an_administrator(session: AsyncSession, user: User) -> None:
    """Refuse (409) taking administration from ``user`` — demoting, disabling or deleting
    them — when they are the only active administrator left.

    Nobody can do it to themselves, so only two administrators removing each other at the
    same moment could leave none: the active administrators' rows stay locked, taken in one
    order, until the transaction ends, so such removals are counted one after the other
    (``FOR NO KEY UPDATE``: sign-ins, which only reference the row, do not wait). SQLite:
    every writing transaction holds the database's lock from ``BEGIN``.
    """
    active = await session.scalars(
        select(User.id)
        .where(User.is_admin.is_(True), User.disabled.is_(False))
        .order_by(User.id)
        .with_for_update(key_share=True)
    )
    if not set(active) - {user.id}:
        raise Conflict(
            f"{user.email} is the only active administrator: make another user an"
            " administrator first"
        )


async def set_disabled(session: AsyncSession, user: User, disabled: bool) -> None:
    """Disable or enable an account; disabling ends all of its sessions at once."""
    user.disabled = disabled
    if disabled:
        await end_all_sessions(session, user.id)


async def set_email(session: AsyncSession, user: User, email: str) -> None:
    """Give ``user`` another e-mail address (normalised; 409 if another user has it)."""
    address = normalise_email(email)
    if address == user.email:
        return
    taken = await session.scalar(select(User.id).where(User.email == address))
    if taken is not None:
        raise Conflict(f"a user with e-mail {address!r} exists already")
    user.email = address


async def set_password(session: AsyncSession, user: User, password: str, bcrypt_cost: int) -> None:
    """An administrator sets ``user``'s password: the same rules as any password; every
    session of the user ends."""
    problem = password_problem(password)
    if problem:
        raise InvalidRequest(f"password: {problem}")
    user.password_hash = await hash_password(password, bcrypt_cost)
    await end_all_sessions(session, user.id)
