"""Sub-users: other users' access to a server, limited to permission nodes."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.models import Server, Subuser, User
from control_plane.errors import Conflict, Forbidden, InvalidRequest, NotFound
from control_plane.security.permissions import ServerAccess, covers, valid_grant
from control_plane.services.users import normalise_email
from shared.errors import ErrorDetail


def check_grant(access: ServerAccess, permissions: list[str]) -> list[str]:
    """The permissions to store; refuses unknown ones and any the granter does not hold."""
    unknown = [p for p in permissions if not valid_grant(p)]
    if unknown:
        raise InvalidRequest(
            "unknown permissions",
            details=[
                ErrorDetail(
                    loc=["permissions", i], msg=f"unknown permission {p!r}", type="value_error"
                )
                for i, p in enumerate(permissions)
                if p in unknown
            ],
        )
    if access.role == "subuser":
        lacking = [p for p in permissions if not covers(access.permissions, p)]
        if lacking:
            raise Forbidden(f"you cannot grant permissions you do not hold: {', '.join(lacking)}")
    return sorted(set(permissions))


async def add_subuser(
    db: AsyncSession, server: Server, *, email: str, permissions: list[str]
) -> tuple[Subuser, User]:
    user = await db.scalar(select(User).where(User.email == normalise_email(email)))
    if user is None or user.disabled:
        raise NotFound("no active user with that e-mail address")
    if user.id == server.owner_id:
        raise Conflict("the owner has every permission already")
    subuser = Subuser(server_id=server.id, user_id=user.id, permissions=permissions)
    db.add(subuser)
    try:
        await db.flush()
    except IntegrityError as err:
        raise Conflict("that user is a sub-user of this server already") from err
    return subuser, user


async def get_subuser(db: AsyncSession, server: Server, subuser_id: uuid.UUID) -> Subuser:
    subuser = await db.get(Subuser, subuser_id)
    if subuser is None or subuser.server_id != server.id:
        raise NotFound("no such sub-user")
    return subuser
