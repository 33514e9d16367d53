"""Invitations of people without an account to a server, and accepting one (docs/email.md).

Inviting needs ``users.create`` on the server and grants at most what the inviter holds;
the invitation is mailed, and its link (the page ``/invitation``) creates the account with
those permissions, or gives them to an account made with the invited address since.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import delete, select

from control_plane.api.auth import start_session, wake_mail_sender
from control_plane.api.routing import Access, ApiRequest, ApiRoutes
from control_plane.api.sftp_sync import push_after_commit
from control_plane.db.models import Invitation, User
from control_plane.errors import Forbidden, InvalidRequest, NotFound
from control_plane.schemas.auth import SessionOut, TokenQuery
from control_plane.schemas.mail import (
    InvitationAcceptIn,
    InvitationJoined,
    InvitationJoinIn,
    InvitationList,
    InvitationOut,
    InvitationView,
)
from control_plane.schemas.servers import SubuserCreate
from control_plane.security.passwords import hash_password, password_problem
from control_plane.services import sftp
from control_plane.services import subusers as service
from control_plane.services.audit import Actor

routes = ApiRoutes("sub-users")
ORIGIN = "/api/v1/servers/{server_id}/invitations"


@routes.get(
    ORIGIN,
    summary="List pending invitations",
    permission="users.read",
    response=InvitationList,
)
async def list_invitations(req: ApiRequest[Any, Any]) -> InvitationList:
    rows = await req.db.scalars(
        select(Invitation)
        .where(
            Invitation.server_id == req.server.id,
            Invitation.accepted_at.is_(None),
            Invitation.expires_at > dt.datetime.now(dt.UTC),
        )
        .order_by(Invitation.email)
    )
    return InvitationList(data=[InvitationOut.model_validate(row) for row in rows])


@routes.post(
    ORIGIN,
    summary="Invite an address without an account (mailed; 409 when this panel sends no mail)",
    permission="users.create",
    body=SubuserCreate,
    response=InvitationOut,
    status=201,
    rate_limit="invitations",
)
async def invite(req: ApiRequest[SubuserCreate, Any]) -> InvitationOut:
    try:
        permissions = service.check_grant(req.access, req.body.permissions)
    except Forbidden as err:
        raise req.deny(err, action="server.subuser.grant_refused") from err
    inviter = await req.db.get(User, req.me.user_id)
    if inviter is None:
        raise NotFound("no such user")
    invitation = await service.invite(
        req.db,
        req.settings,
        req.server,
        email=req.body.email,
        permissions=permissions,
        inviter=inviter,
    )
    await req.audit(
        "server.invitation.created",
        target_type="server",
        target_id=str(req.server.id),
        details={"email": invitation.email, "permissions": permissions},
    )
    wake_mail_sender(req)
    return InvitationOut.model_validate(invitation)


@routes.delete(
    ORIGIN + "/{invitation_id}",
    summary="Withdraw a pending invitation (its link stops working)",
    permission="users.delete",
    status=204,
)
async def withdraw_invitation(req: ApiRequest[Any, Any]) -> None:
    invitation_id = req.uuid_param("invitation_id")
    removed = await req.db.execute(
        delete(Invitation).where(
            Invitation.id == invitation_id,
            Invitation.server_id == req.server.id,
            Invitation.accepted_at.is_(None),
        )
    )
    if removed.rowcount != 1:  # type: ignore[attr-defined]
        raise NotFound("no such invitation")
    await req.audit(
        "server.invitation.withdrawn",
        target_type="server",
        target_id=str(req.server.id),
        details={"invitation": str(invitation_id)},
    )


@routes.get(
    service.ACCEPT_PATH,
    summary="What an invitation link offers (the link in the mail); nothing is used up",
    access=Access.PUBLIC,
    query=TokenQuery,
    response=InvitationView,
    rate_limit="authentication",
)
async def view_invitation(req: ApiRequest[Any, TokenQuery]) -> InvitationView:
    invitation, server = await service.pending_invitation(req.db, req.query.token)
    return InvitationView(
        email=invitation.email,
        server_name=server.name,
        permissions=list(invitation.permissions),
        expires_at=invitation.expires_at,
        how=f"POST {service.ACCEPT_PATH} with "
        '{"token": "<this token>", "password": "<at least 12 characters>"}',
    )


@routes.post(
    service.ACCEPT_PATH,
    summary="Accept an invitation: creates the account, signs it in",
    access=Access.PUBLIC,
    body=InvitationAcceptIn,
    response=SessionOut,
    status=201,
    rate_limit="authentication",
    transactional=False,
)
async def accept_invitation(req: ApiRequest[InvitationAcceptIn, Any]) -> SessionOut:
    if req.settings.registration_mode == "closed":
        raise Forbidden("registration is closed; ask an administrator for an account")
    async with req.transaction(write=False):
        await service.pending_invitation(req.db, req.body.token)
    problem = password_problem(req.body.password)
    if problem:
        raise InvalidRequest(f"password: {problem}")
    password_hash = await hash_password(req.body.password, req.settings.bcrypt_cost)
    async with req.transaction():
        user = await service.accept_invitation(req.db, req.body.token, password_hash)
        actor = Actor(user.id, user.email, req.ip, req.user_agent)
        await req.audit(
            "server.invitation.accepted", actor=actor, target_type="user", target_id=str(user.id)
        )
        await req.audit("user.registered", actor=actor, target_type="user", target_id=str(user.id))
        push_after_commit(req, await sftp.nodes_of_user(req.db, user.id))
        return await start_session(req, user, method="registration")


@routes.post(
    service.JOIN_PATH,
    summary="Accept an invitation as the signed-in user of the invited address "
    "(an account made since the invitation was sent)",
    body=InvitationJoinIn,
    response=InvitationJoined,
    rate_limit="authentication",
    # The token proves the invited mailbox: an account that still has to verify its address
    # (STELLAR_REQUIRE_EMAIL_VERIFICATION) joins with it, and is verified by it.
    allow_unverified=True,
)
async def join_invitation(req: ApiRequest[InvitationJoinIn, Any]) -> InvitationJoined:
    user = await req.db.get(User, req.me.user_id)
    if user is None:
        raise NotFound("no such user")
    unverified = user.email_verified_at is None
    invitation = await service.join_invitation(req.db, req.body.token, user)
    await req.audit(
        "server.invitation.accepted",
        target_type="server",
        target_id=str(invitation.server_id),
        details={"permissions": list(invitation.permissions)},
    )
    if unverified:
        await req.audit(
            "user.email.verified",
            target_type="user",
            target_id=str(user.id),
            details={"email": user.email, "by": "invitation"},
        )
    push_after_commit(req, await sftp.nodes_of_user(req.db, user.id))
    return InvitationJoined(
        server_id=invitation.server_id, permissions=list(invitation.permissions)
    )
