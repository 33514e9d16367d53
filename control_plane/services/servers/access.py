"""Who may see a server, and what they may do on it."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.models import Server, Subuser
from control_plane.security.caller import Caller
from control_plane.security.permissions import ServerAccess


async def access_for(
    db: AsyncSession, caller: Caller, server_id: uuid.UUID
) -> tuple[Server, ServerAccess] | None:
    """The server and the caller's access to it, or None if the caller may not see it.

    Administrators see every server only through a credential with the ``admin`` scope.
    """
    server = await db.get(Server, server_id)
    if server is None:
        return None
    suspended = server.suspended
    if caller.acts_as_admin:
        return server, ServerAccess(server.id, "admin", frozenset({"*"}), suspended)
    if server.owner_id == caller.user_id:
        return server, ServerAccess(server.id, "owner", frozenset({"*"}), suspended)
    sub = await db.scalar(
        select(Subuser).where(Subuser.server_id == server_id, Subuser.user_id == caller.user_id)
    )
    if sub is None:
        return None
    return server, ServerAccess(server.id, "subuser", frozenset(sub.permissions), suspended)
