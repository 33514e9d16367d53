"""Password sign-in and password changes."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.models import User
from control_plane.errors import Forbidden, InvalidRequest
from control_plane.security.passwords import hash_password, password_problem, verify_password
from control_plane.security.sessions import end_all_sessions
from control_plane.services.users import normalise_email


async def check_password_login(
    db: AsyncSession, *, email: str, password: str, bcrypt_cost: int
) -> User | None:
    """The user if e-mail and password match an enabled account, else None.

    Unknown, malformed and disabled accounts take the same bcrypt time as a wrong password,
    so neither the answer nor its timing says whether an account exists.
    """
    try:
        address: str | None = normalise_email(email)
    except InvalidRequest:
        address = None
    user = await db.scalar(select(User).where(User.email == address)) if address else None
    matches = await verify_password(password, user.password_hash if user else None, bcrypt_cost)
    if user is None or not matches or user.disabled:
        return None
    return user


async def change_password(
    db: AsyncSession, user: User, *, current: str, new: str, bcrypt_cost: int
) -> None:
    """Replace the password after checking the current one; end every session of the user."""
    if not await verify_password(current, user.password_hash, bcrypt_cost):
        raise Forbidden("the current password is wrong")
    problem = password_problem(new)
    if problem:
        raise InvalidRequest(f"new password: {problem}")
    user.password_hash = await hash_password(new, bcrypt_cost)
    await end_all_sessions(db, user.id)
