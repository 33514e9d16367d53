"""Sub-users: other users' access to a server, limited to permission nodes."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Final

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.models import Invitation, Server, Subuser, User
from control_plane.errors import Conflict, Forbidden, InvalidRequest, NotFound
from control_plane.mail import tokens
from control_plane.mail.outbox import queue
from control_plane.security.permissions import (
    RETIRED,
    ServerAccess,
    covers,
    holds,
    valid_grant,
)
from control_plane.services.mail_flows import NO_MAIL, within_allowance
from control_plane.services.users import normalise_email, username_for
from control_plane.settings import ControlPlaneSettings
from shared.errors import ErrorDetail


def _unknown(node: str) -> str:
    if node in RETIRED:
        return f"unknown permission {node!r}: it is now {RETIRED[node]!r}"
    return f"unknown permission {node!r}"


def check_grant(access: ServerAccess, permissions: list[str]) -> list[str]:
    """The permissions to store; refuses unknown ones and any the granter does not hold."""
    unknown = [p for p in permissions if not valid_grant(p)]
    if unknown:
        raise InvalidRequest(
            "unknown permissions",
            details=[
                ErrorDetail(loc=["permissions", i], msg=_unknown(p), type="value_error")
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
        raise NotFound(
            "no active user with that e-mail address (to invite someone without an account, "
            "POST /api/v1/servers/{server_id}/invitations)"
        )
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


# Invitations: access offered to an address without an account (docs/email.md).
INVITATION_LIFETIME: Final = dt.timedelta(days=7)
# Invitations one address is mailed, from whichever servers and inviters: (count, window).
INVITATION_ALLOWANCE: Final = (3, dt.timedelta(hours=1))
ACCEPT_PATH: Final = "/api/v1/invitations/accept"
JOIN_PATH: Final = "/api/v1/invitations/join"
# The page the mailed link opens (control_plane/web/invitation_page.py).
INVITATION_PAGE: Final = "/invitation"
OTHER_ADDRESS: Final = "this invitation is for another e-mail address"


async def invite(
    db: AsyncSession,
    settings: ControlPlaneSettings,
    server: Server,
    *,
    email: str,
    permissions: list[str],
    inviter: User,
) -> Invitation:
    """Mail an invitation to ``email``, which has no account; a pending invitation of the
    same address to the same server is replaced (its link stops working)."""
    if not settings.mail_enabled:
        raise Conflict(f"invitations are mailed: {NO_MAIL}")
    if settings.registration_mode == "closed":
        raise Conflict(
            "registration is closed: an administrator creates the account, then you add it "
            "as a sub-user"
        )
    address = normalise_email(email)
    if await db.scalar(select(User.id).where(User.email == address)) is not None:
        raise Conflict("that address has an account: add it as a sub-user instead")
    await db.execute(
        delete(Invitation).where(
            Invitation.server_id == server.id,
            Invitation.email == address,
            Invitation.accepted_at.is_(None),
        )
    )
    await within_allowance(
        db, kind="invitation", to=address, allowance=INVITATION_ALLOWANCE, what="invitations"
    )
    token, digest = tokens.new_token()
    invitation = Invitation(
        server_id=server.id,
        email=address,
        permissions=permissions,
        invited_by=inviter.id,
        token_hash=digest,
        expires_at=dt.datetime.now(dt.UTC) + INVITATION_LIFETIME,
    )
    db.add(invitation)
    await queue(
        db,
        kind="invitation",
        to=address,
        context={
            "inviter": inviter.email,
            "server_name": server.name,
            "permissions": permissions,
            "link": f"{settings.link_base}{INVITATION_PAGE}?token={token}",
            "days": INVITATION_LIFETIME.days,
        },
        base_url=settings.link_base,
    )
    return invitation


async def pending_invitation(db: AsyncSession, token: str) -> tuple[Invitation, Server]:
    """The live invitation a token opens (not accepted, not expired), or 400."""
    row = await db.scalar(
        select(Invitation).where(Invitation.token_hash == tokens.token_hash(token[:128]))
    )
    server = await db.get(Server, row.server_id) if row is not None else None
    now = dt.datetime.now(dt.UTC)
    if row is None or server is None or row.accepted_at is not None or row.expires_at <= now:
        raise InvalidRequest(tokens.INVALID)
    if not await _inviter_still_grants(db, row, server):
        raise InvalidRequest(tokens.INVALID)
    return row, server


async def _inviter_still_grants(db: AsyncSession, invitation: Invitation, server: Server) -> bool:
    """Whether the inviter could send this invitation now: the server's owner, an
    administrator, or a sub-user who still holds ``users.create`` and every permission it
    grants. (A sub-user removed or narrowed must not get access back through an invitation
    sent to an address of their own before.)"""
    if invitation.invited_by is None:
        return False
    inviter = await db.get(User, invitation.invited_by)
    if inviter is None or inviter.disabled:
        return False
    if inviter.id == server.owner_id or inviter.is_admin:
        return True
    sub = await db.scalar(
        select(Subuser).where(Subuser.server_id == server.id, Subuser.user_id == inviter.id)
    )
    if sub is None or not holds(sub.permissions, "users.create"):
        return False
    return all(covers(sub.permissions, p) for p in invitation.permissions)


async def _take(db: AsyncSession, invitation: Invitation) -> None:
    """Mark ``invitation`` accepted, once: of two racing acceptances, one is refused."""
    taken = await db.execute(
        update(Invitation)
        .where(Invitation.id == invitation.id, Invitation.accepted_at.is_(None))
        .values(accepted_at=dt.datetime.now(dt.UTC))
        .execution_options(synchronize_session=False)
    )
    if taken.rowcount != 1:  # type: ignore[attr-defined]
        raise InvalidRequest(tokens.INVALID)


async def accept_invitation(db: AsyncSession, token: str, password_hash: str) -> User:
    """Create the invited account (its address proven by the link) with the granted
    permissions; every other pending invitation of that address is accepted with it."""
    invitation, _ = await pending_invitation(db, token)
    await _take(db, invitation)
    if await db.scalar(select(User.id).where(User.email == invitation.email)) is not None:
        raise Conflict("an account with this address exists now: sign in and ask to be added")
    now = dt.datetime.now(dt.UTC)
    user = User(
        email=invitation.email,
        username=await username_for(db, invitation.email),
        password_hash=password_hash,
        email_verified_at=now,
    )
    db.add(user)
    try:
        await db.flush()
    except IntegrityError as err:  # registered at the same moment
        raise Conflict(
            "an account with this address exists now: sign in and ask to be added"
        ) from err
    others = await db.scalars(
        select(Invitation).where(
            Invitation.email == invitation.email,
            Invitation.accepted_at.is_(None),
            Invitation.expires_at > now,
        )
    )
    servers = {invitation.server_id: invitation.permissions}
    for other in others:
        other.accepted_at = now
        server = await db.get(Server, other.server_id)
        if server is not None and await _inviter_still_grants(db, other, server):
            servers.setdefault(other.server_id, other.permissions)
    for server_id, permissions in servers.items():
        db.add(Subuser(server_id=server_id, user_id=user.id, permissions=permissions))
    await db.flush()
    return user


async def join_invitation(db: AsyncSession, token: str, user: User) -> Invitation:
    """Make the signed-in ``user`` a sub-user with what the invitation grants: an account
    made with the invited address after the invitation was sent (the address must match;
    the token proves the mailbox)."""
    invitation, server = await pending_invitation(db, token)
    if normalise_email(user.email) != invitation.email:
        raise Forbidden(OTHER_ADDRESS)
    if user.id == server.owner_id:
        raise Conflict("the owner has every permission already")
    await _take(db, invitation)
    # The link reached the invited mailbox, which is the user's address: proven, as a reset
    # link proves it (``mail_flows.reset_password``).
    user.email_verified_at = user.email_verified_at or dt.datetime.now(dt.UTC)
    db.add(Subuser(server_id=server.id, user_id=user.id, permissions=invitation.permissions))
    try:
        await db.flush()
    except IntegrityError as err:
        raise Conflict("you are a sub-user of this server already") from err
    return invitation
