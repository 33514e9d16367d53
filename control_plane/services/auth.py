"""Password sign-in and password changes."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.models import User
from control_plane.errors import Conflict, Forbidden, InvalidRequest
from control_plane.security.passwords import hash_password, password_problem, verify_password
from control_plane.security.sessions import end_all_sessions
from control_plane.services.users import normalise_email

# What every password change says when the current password is wrong (the
# Pterodactyl-compatible routes recognise it and answer in their own way).
WRONG_PASSWORD = "the current password is wrong"  # noqa: S105 (a message, not a password)


async def find_login(db: AsyncSession, email: str) -> User | None:
    """The account an e-mail address names, if any (malformed addresses name none)."""
    try:
        address = normalise_email(email)
    except InvalidRequest:
        return None
    return await db.scalar(select(User).where(User.email == address))


async def password_matches(user: User | None, password: str, bcrypt_cost: int) -> bool:
    """Whether ``password`` opens ``user``, an enabled account.

    Unknown, malformed and disabled accounts take the same bcrypt time as a wrong password,
    so neither the answer nor its timing says whether an account exists. Call it outside
    any database transaction: bcrypt takes a while.
    """
    matches = await verify_password(password, user.password_hash if user else None, bcrypt_cost)
    return user is not None and matches and not user.disabled


async def password_opens(user: User | None, password: str, bcrypt_cost: int) -> bool:
    """Whether ``password`` is ``user``'s, disabled or not (the same bcrypt time for an
    unknown account); the caller decides what a disabled account is told."""
    matches = await verify_password(password, user.password_hash if user else None, bcrypt_cost)
    return user is not None and matches


async def new_password_hash(
    current_hash: str | None, *, current: str, new: str, bcrypt_cost: int
) -> str:
    """The hash of ``new`` once ``current`` is checked (bcrypt twice: no transaction open)."""
    if not await verify_password(current, current_hash, bcrypt_cost):
        raise Forbidden(WRONG_PASSWORD)
    problem = password_problem(new)
    if problem:
        raise InvalidRequest(f"new password: {problem}")
    return await hash_password(new, bcrypt_cost)


async def replace_password(
    db: AsyncSession, user: User, *, expected_hash: str | None, new_hash: str
) -> None:
    """Store the new hash unless the password changed meanwhile; end every session."""
    if user.password_hash != expected_hash:
        raise Conflict("the password was changed meanwhile; try again")
    user.password_hash = new_hash
    await end_all_sessions(db, user.id)
