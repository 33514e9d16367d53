"""What mailed links lead to, and asking for them: e-mail verification, a change of
address, and password reset (docs/email.md).

A link in a mail opens a page of the panel (control_plane/web/auth_pages.py) that calls
these routes: verifying is a GET that writes (like the OAuth callback); checking a reset
link uses nothing up, and the new password is POSTed with its token.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from control_plane.api.auth import spend_password_try, wake_mail_sender
from control_plane.api.routing import Access, ApiRequest, ApiRoutes
from control_plane.api.sftp_sync import push_after_commit
from control_plane.db.models import User
from control_plane.errors import Conflict, InvalidRequest, Unauthenticated
from control_plane.mail import tokens
from control_plane.schemas.auth import (
    EmailChangeIn,
    EmailIn,
    MessageOut,
    PasswordResetIn,
    ResetTokenOut,
    TokenQuery,
    VerifiedOut,
)
from control_plane.security.passwords import hash_password, password_problem
from control_plane.services import auth as auth_service
from control_plane.services import mail_flows, sftp
from control_plane.services.audit import Actor

routes = ApiRoutes("e-mail")
RESET_REQUESTED = (
    "if an account uses that address, a link to reset its password is on its way; "
    "it works once, for 30 minutes"
)


def _require_mail(req: ApiRequest[Any, Any]) -> None:
    if not req.settings.mail_enabled:
        raise Conflict(mail_flows.NO_MAIL)


@routes.get(
    mail_flows.VERIFY_PATH,
    summary="Verify an e-mail address (the link in the verification mail; works once)",
    access=Access.PUBLIC,
    query=TokenQuery,
    response=VerifiedOut,
    rate_limit="sensitive",
    writes=True,
)
async def verify_email(req: ApiRequest[Any, TokenQuery]) -> VerifiedOut:
    user = await mail_flows.confirm_verification(req.db, req.query.token)
    await req.audit(
        "user.email.verified",
        actor=Actor(user.id, user.email, req.ip, req.user_agent),
        target_type="user",
        target_id=str(user.id),
        details={"email": user.email},
    )
    return VerifiedOut(email=user.email, email_verified_at=user.email_verified_at or _now())


@routes.post(
    "/api/v1/account/email/verification",
    summary="Mail me a new verification link",
    response=MessageOut,
    status=202,
    rate_limit="sensitive",
    allow_unverified=True,
)
async def resend_verification(req: ApiRequest[Any, Any]) -> MessageOut:
    _require_mail(req)
    user = await req.db.get(User, req.me.user_id)
    if user is None:
        raise Unauthenticated("authentication required")
    if user.email_verified_at is not None:
        raise Conflict("your address is verified already")
    await mail_flows.send_verification(req.db, req.settings, user)
    await req.audit("user.email.verification_sent", target_type="user", target_id=str(user.id))
    wake_mail_sender(req)
    return MessageOut(message=f"a verification link is on its way to {user.email}")


@routes.post(
    "/api/v1/account/email",
    summary="Change my e-mail address (with mail: once the new address is verified)",
    body=EmailChangeIn,
    response=MessageOut,
    status=202,
    rate_limit="sensitive",
    transactional=False,
    allow_unverified=True,
)
async def change_email(req: ApiRequest[EmailChangeIn, Any]) -> MessageOut:
    async with req.transaction(write=False):
        current = await req.db.get(User, req.me.user_id)
    if current is None:
        raise Unauthenticated("authentication required")
    await spend_password_try(req, current.email, current, failure="user.email.change_failed")
    # bcrypt between transactions.
    if not await auth_service.password_matches(
        current, req.body.current_password, req.settings.bcrypt_cost
    ):
        req.audit_failure("user.email.change_failed", target_type="user", target_id=str(current.id))
        raise InvalidRequest(auth_service.WRONG_PASSWORD)
    async with req.transaction():
        user = await req.db.get(User, req.me.user_id)
        if user is None or user.password_hash != current.password_hash:
            raise Conflict("the account changed meanwhile; try again")
        old = user.email
        mailed = await mail_flows.request_email_change(req.db, req.settings, user, req.body.email)
        details = {"from": old, "to": req.body.email.strip().lower()}
        if mailed:
            await req.audit(
                "user.email.change_requested",
                target_type="user",
                target_id=str(user.id),
                details=details,
            )
            wake_mail_sender(req)
            return MessageOut(
                message="open the link mailed to the new address to finish the change"
            )
        await req.audit(
            "user.email.changed", target_type="user", target_id=str(user.id), details=details
        )
        return MessageOut(message=f"your address is now {user.email} (unverified)")


@routes.post(
    mail_flows.RESET_PATH,
    summary="Mail a password-reset link (the same answer whether or not the address has an "
    "account)",
    access=Access.PUBLIC,
    body=EmailIn,
    response=MessageOut,
    status=202,
    rate_limit="authentication",
)
async def request_password_reset(req: ApiRequest[EmailIn, Any]) -> MessageOut:
    _require_mail(req)
    found = await mail_flows.request_password_reset(req.db, req.settings, req.body.email)
    # Audited on both paths (the same write either way); the target only when it exists.
    user_id, mailed = found if found is not None else (None, False)
    await req.audit(
        "user.password.reset_requested",
        target_type="user" if user_id else None,
        target_id=str(user_id) if user_id else None,
        details={} if mailed or user_id is None else {"mailed": False, "reason": "allowance"},
    )
    if mailed:
        wake_mail_sender(req)
    return MessageOut(message=RESET_REQUESTED)


@routes.get(
    mail_flows.RESET_PATH,
    summary="Check a password-reset link (the link in the mail); nothing is used up",
    access=Access.PUBLIC,
    query=TokenQuery,
    response=ResetTokenOut,
    rate_limit="authentication",
)
async def check_reset_link(req: ApiRequest[Any, TokenQuery]) -> ResetTokenOut:
    row = await tokens.peek(req.db, req.query.token, "reset")
    return ResetTokenOut(
        expires_at=row.expires_at,
        how=f"POST {mail_flows.RESET_PATH}/confirm with "
        '{"token": "<this token>", "new_password": "<at least 12 characters>"}',
    )


@routes.post(
    mail_flows.RESET_PATH + "/confirm",
    summary="Set a new password with a reset link's token; ends every session",
    access=Access.PUBLIC,
    body=PasswordResetIn,
    response=MessageOut,
    rate_limit="authentication",
    transactional=False,
)
async def reset_password(req: ApiRequest[PasswordResetIn, Any]) -> MessageOut:
    async with req.transaction(write=False):
        await tokens.peek(req.db, req.body.token, "reset")
    problem = password_problem(req.body.new_password)
    if problem:
        raise InvalidRequest(f"new password: {problem}")
    # bcrypt between transactions; the token is used (once) in the write below.
    new_hash = await hash_password(req.body.new_password, req.settings.bcrypt_cost)
    async with req.transaction():
        user, claimed = await mail_flows.reset_password(
            req.db, req.settings, req.body.token, new_hash, ip=req.ip
        )
        if claimed:  # a squatter's SSH keys and SFTP passwords went: their nodes must know
            push_after_commit(req, await sftp.nodes_of_user(req.db, user.id))
        await req.audit(
            "user.password.reset",
            actor=Actor(user.id, user.email, req.ip, req.user_agent),
            target_type="user",
            target_id=str(user.id),
        )
    wake_mail_sender(req)
    return MessageOut(message="your password is changed; sign in with it")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
