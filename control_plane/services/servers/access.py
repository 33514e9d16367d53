"""Who may see a server, and what they may do on it."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from control_plane.db.models import Server, Subuser
from control_plane.db.session import transaction
from control_plane.errors import ApiError, NotFound, Unauthenticated
from control_plane.security.authorization import Requirement, refusal
from control_plane.security.caller import Caller
from control_plane.security.permissions import ServerAccess

CREDENTIAL_GONE = "the credential this request came with no longer works"


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


async def standing(
    sessions: async_sessionmaker[AsyncSession],
    caller: Caller | None,
    server_id: uuid.UUID,
    *needs: Requirement,
) -> tuple[Server, ServerAccess] | ApiError:
    """Whether ``caller`` (read from their credential just now; None when it no longer
    works) may do what every one of ``needs`` says on the server, decided now: the server
    and their access, or the error a new request would get (401, then 404 for a server they
    no longer see, then the first requirement refused).

    The one decision for whatever is admitted once and lasts or comes back later: a body
    arriving or a download going out (``ApiRequest.authorized_again``), a console socket
    (its admission and each re-check), a route whose credential is in a signed link."""
    if caller is None:
        return Unauthenticated(CREDENTIAL_GONE)
    async with transaction(sessions) as db:
        found = await access_for(db, caller, server_id)
    if found is None:
        return NotFound("no such server")
    for need in needs:
        error = refusal(caller, need, found[1])
        if error is not None:
            return error
    return found
