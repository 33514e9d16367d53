"""Sign-in, sign-out, the current session, the user's sessions and password changes."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from control_plane.api.routing import Access, ApiRequest, ApiRoutes
from control_plane.db.models import Session, User
from control_plane.errors import Forbidden, InvalidRequest, NotFound, RateLimited, Unauthenticated
from control_plane.keys import MAIL, METRICS, RATE_LIMITER
from control_plane.schemas.auth import (
    LoginIn,
    PasswordChangeIn,
    RegisterIn,
    SessionInfo,
    SessionList,
    SessionOut,
    UserOut,
)
from control_plane.schemas.mfa import LoginOut, MfaRequiredOut
from control_plane.security import devices, sessions
from control_plane.services import auth as auth_service
from control_plane.services import mail_flows
from control_plane.services import mfa as mfa_service
from control_plane.services import users as user_service
from control_plane.services.audit import Actor

routes = ApiRoutes("auth")


def wake_mail_sender(req: ApiRequest[Any, Any]) -> None:
    """Once the request commits, tell the mail sender (if it runs here) to send now."""
    sender = req.http.app.get(MAIL)
    if sender is not None:

        async def wake() -> None:
            sender.wake()

        req.after_commit(wake)


ACCOUNT_DISABLED = "this account is disabled; ask an administrator"
ACCOUNT_PRESET = "sign_in_account"
TOO_MANY_FOR_ACCOUNT = "too many attempts for this account"
# A password-only session that still owes its second factor lives this long.
PENDING_SESSION = dt.timedelta(minutes=5)


def _cookie_options(req: ApiRequest[Any, Any]) -> dict[str, Any]:
    return {
        "httponly": True,
        "samesite": "Strict",
        "secure": req.settings.secure_cookies,
        "path": "/",
    }


async def start_session(req: ApiRequest[Any, Any], user: User, *, method: str) -> SessionOut:
    """The one way every sign-in ends: a new session, its cookie, and the audit row."""
    if req.caller and req.caller.session_id:
        await sessions.end_session(req.db, req.caller.session_id)
    max_age = dt.timedelta(hours=req.settings.session_max_hours)
    session, token = await sessions.open_session(
        req.db,
        secret=req.settings.auth_secret or "",
        user=user,
        ip=req.ip,
        user_agent=req.user_agent,
        max_age=max_age,
    )
    req.set_cookie(
        sessions.cookie_name(req.settings.secure_cookies),
        token,
        max_age=int(max_age.total_seconds()),
        **_cookie_options(req),
    )
    # This browser is now one the account has signed in with (control_plane/security/devices.py).
    device_cookie = devices.cookie_name(req.settings.secure_cookies)
    req.set_cookie(
        device_cookie,
        devices.recognised(
            req.settings.auth_secret or "", req.http.cookies.get(device_cookie), str(user.id)
        ),
        max_age=devices.LIFETIME_SECONDS,
        **_cookie_options(req),
    )
    await req.audit(
        "user.login.succeeded",
        actor=Actor(user.id, user.email, req.ip, req.user_agent),
        target_type="user",
        target_id=str(user.id),
        details={"method": method},
    )
    req.http.app[METRICS].sign_ins.labels(method, "succeeded").inc()
    return SessionOut(
        user=UserOut.model_validate(user),
        csrf_token=sessions.csrf_token(req.settings.auth_secret or "", session.id),
        expires_at=session.expires_at,
        via="session",
        must_enrol=await mfa_service.enrolment_required(req.db, user, req.settings.require_2fa),
        must_verify=req.settings.require_email_verification and user.email_verified_at is None,
    )


async def start_pending_session(
    req: ApiRequest[Any, Any], user: User, *, methods: list[str]
) -> MfaRequiredOut:
    """A short-lived cookie session that can do nothing but finish with a second factor.

    Never a bearer token: only the browser holding this cookie can complete the sign-in.
    """
    if req.caller and req.caller.session_id:
        await sessions.end_session(req.db, req.caller.session_id)
    session, token = await sessions.open_session(
        req.db,
        secret=req.settings.auth_secret or "",
        user=user,
        ip=req.ip,
        user_agent=req.user_agent,
        max_age=PENDING_SESSION,
        mfa_pending=True,
    )
    req.set_cookie(
        sessions.cookie_name(req.settings.secure_cookies),
        token,
        max_age=int(PENDING_SESSION.total_seconds()),
        **_cookie_options(req),
    )
    await req.audit(
        "user.login.password_verified",
        actor=Actor(user.id, user.email, req.ip, req.user_agent),
        target_type="user",
        target_id=str(user.id),
        details={"methods": methods},
    )
    return MfaRequiredOut(
        methods=methods,
        csrf_token=sessions.csrf_token(req.settings.auth_secret or "", session.id),
        expires_at=session.expires_at,
    )


@routes.post(
    "/api/v1/auth/login",
    summary="Sign in with e-mail and password",
    access=Access.PUBLIC,
    body=LoginIn,
    response=LoginOut,
    rate_limit="authentication",
    transactional=False,
)
async def login(req: ApiRequest[LoginIn, Any]) -> LoginOut:
    async with req.transaction(write=False):
        found = await auth_service.find_login(req.db, req.body.email)
    try:
        await spend_password_try(req, req.body.email, found, failure="user.login.failed")
    except RateLimited:
        req.http.app[METRICS].sign_ins.labels("password", "failed").inc()
        raise
    # bcrypt between transactions: it never holds a database lock.
    matches = await auth_service.password_opens(found, req.body.password, req.settings.bcrypt_cost)
    async with req.transaction():
        user = await req.db.get(User, found.id) if found is not None and matches else None
        # Re-read: the account may have been disabled or its password changed meanwhile.
        changed = user is None or found is None or user.password_hash != found.password_hash
        if user is None or changed:
            req.audit_failure(
                "user.login.failed", details={"method": "password", "email": req.body.email}
            )
            req.http.app[METRICS].sign_ins.labels("password", "failed").inc()
            raise Unauthenticated("invalid e-mail or password")
        if user.disabled:
            # Said only to someone who knows the password: the account's owner.
            req.audit_failure(
                "user.login.failed",
                details={"method": "password", "email": req.body.email, "reason": "disabled"},
            )
            req.http.app[METRICS].sign_ins.labels("password", "failed").inc()
            raise Forbidden(ACCOUNT_DISABLED)
        # Only now, with the password verified, may the answer reveal that 2FA is on.
        policy = req.settings.require_2fa
        if await mfa_service.passkey_is_the_second_factor(req.db, user, policy):
            req.audit_failure(
                "user.login.failed",
                details={"method": "password", "email": req.body.email, "reason": "passkey"},
            )
            req.http.app[METRICS].sign_ins.labels("password", "failed").inc()
            raise Forbidden(mfa_service.PASSKEY_IS_THE_SECOND_FACTOR)
        methods = await mfa_service.second_factor_methods(req.db, user.id)
        if methods:
            req.http.app[METRICS].sign_ins.labels("password", "second_factor_required").inc()
            return LoginOut(await start_pending_session(req, user, methods=methods))
        return LoginOut(await start_session(req, user, method="password"))


async def spend_password_try(
    req: ApiRequest[Any, Any], email: str, user: User | None, *, failure: str
) -> None:
    """One password check of the account's allowance for strangers, or of this browser's
    own when the account signed in with it before; 429 when it is spent. Decided before the
    password is checked, and for addresses without an account alike: neither the right
    password nor the refusal tells a guesser anything. Every route that checks a password
    spends it (signing in, and the current password of a change, which a session or an API
    key would otherwise let its holder guess from as many addresses as they have);
    ``failure`` is the audit action of a refusal."""
    settings = req.settings
    device = devices.read(
        settings.auth_secret or "",
        req.http.cookies.get(devices.cookie_name(settings.secure_cookies)),
    )
    if (
        device is not None
        and user is not None
        and device.knows(user.id, since=user.sessions_ended_at)
    ):
        subject = devices.device_subject(device)
    else:
        subject = devices.account_subject(email, has_account=user is not None)
    decision = await req.http.app[RATE_LIMITER].check_subject(ACCOUNT_PRESET, subject)
    if decision.allowed:
        return
    target = {"target_type": "user", "target_id": str(user.id)} if user is not None else {}
    req.audit_failure(
        failure,
        details={"method": "password", "email": email, "reason": TOO_MANY_FOR_ACCOUNT},
        **target,
    )
    req.http.app[METRICS].rate_limited.labels(ACCOUNT_PRESET).inc()
    wait = decision.headers(0)["Retry-After"]
    raise RateLimited(
        f"{TOO_MANY_FOR_ACCOUNT}; try again in {wait} s, or sign in from a browser you have "
        "signed in with before",
        headers={"Retry-After": wait},
    )


@routes.post(
    "/api/v1/auth/register",
    summary="Create an account (only when self-registration is on)",
    access=Access.PUBLIC,
    body=RegisterIn,
    response=SessionOut,
    status=201,
    rate_limit="authentication",
)
async def register(req: ApiRequest[RegisterIn, Any]) -> SessionOut:
    mode = req.settings.registration_mode
    if mode == "closed":
        raise Forbidden("self-registration is closed; ask an administrator for an account")
    if mode == "invite_only":
        raise Forbidden(
            "registration is by invitation only: open the link in the invitation you were mailed"
        )
    user = await user_service.create_user(
        req.db,
        email=req.body.email,
        password=req.body.password,
        is_admin=False,
        bcrypt_cost=req.settings.bcrypt_cost,
        verified=False,
    )
    await req.audit(
        "user.registered",
        actor=Actor(user.id, user.email, req.ip, req.user_agent),
        target_type="user",
        target_id=str(user.id),
    )
    if await mail_flows.send_verification(req.db, req.settings, user):
        wake_mail_sender(req)
    return await start_session(req, user, method="registration")


@routes.post(
    "/api/v1/auth/logout",
    summary="End the current session",
    allow_mfa_pending=True,
    allow_enrolment=True,
    allow_unverified=True,
)
async def logout(req: ApiRequest[Any, Any]) -> None:
    if req.me.session_id is None:
        raise InvalidRequest("API keys have no session to end; revoke the key instead")
    await sessions.end_session(req.db, req.me.session_id)
    req.delete_cookie(sessions.cookie_name(req.settings.secure_cookies), path="/")
    await req.audit("user.logout", target_type="user", target_id=str(req.me.user_id))


@routes.get(
    "/api/v1/auth/session",
    summary="The signed-in user and the session's CSRF token",
    response=SessionOut,
    allow_mfa_pending=True,
    allow_enrolment=True,
    allow_unverified=True,
)
async def current_session(req: ApiRequest[Any, Any]) -> SessionOut:
    me = req.me
    user = await req.db.get(User, me.user_id)
    if user is None:
        raise Unauthenticated("authentication required")
    session = await req.db.get(Session, me.session_id) if me.session_id else None
    return SessionOut(
        user=UserOut.model_validate(user),
        csrf_token=sessions.csrf_token(req.settings.auth_secret or "", session.id)
        if session
        else None,
        expires_at=session.expires_at if session else None,
        via=me.via,
        mfa_pending=me.mfa_pending,
        must_enrol=me.must_enrol,
        must_verify=me.must_verify,
    )


@routes.get("/api/v1/auth/sessions", summary="List my sessions", response=SessionList)
async def list_sessions(req: ApiRequest[Any, Any]) -> SessionList:
    return await session_list(req, req.me.user_id)


async def session_list(req: ApiRequest[Any, Any], user_id: uuid.UUID) -> SessionList:
    """The user's sessions that still sign in (``current``: the caller's own)."""
    idle = dt.timedelta(minutes=req.settings.session_idle_minutes)
    rows = await sessions.live_sessions(req.db, user_id, idle)
    return SessionList(
        data=[
            SessionInfo(
                id=s.id,
                created_at=s.created_at,
                last_seen_at=s.last_seen_at,
                expires_at=s.expires_at,
                ip=s.ip,
                user_agent=s.user_agent,
                mfa_pending=s.mfa_pending,
                current=s.id == req.me.session_id,
            )
            for s in rows
        ]
    )


@routes.delete("/api/v1/auth/sessions/{session_id}", summary="End one of my sessions", status=204)
async def revoke_session(req: ApiRequest[Any, Any]) -> None:
    session = await req.db.get(Session, req.uuid_param("session_id"))
    if session is None or session.user_id != req.me.user_id:
        raise req.deny(NotFound("no such session"), target="session")
    if not await sessions.end_session(req.db, session.id):
        raise NotFound("no such session")  # ended by another request meanwhile
    await req.audit("user.session.revoked", target_type="session", target_id=str(session.id))


@routes.post(
    "/api/v1/auth/password",
    summary="Change my password; ends every session and starts a new one here",
    body=PasswordChangeIn,
    response=SessionOut,
    rate_limit="authentication",
    transactional=False,
)
async def change_password(req: ApiRequest[PasswordChangeIn, Any]) -> SessionOut | None:
    async with req.transaction(write=False):
        current = await req.db.get(User, req.me.user_id)
    if current is None:
        raise Unauthenticated("authentication required")
    await spend_password_try(req, current.email, current, failure="user.password.change_failed")
    try:
        new_hash = await auth_service.new_password_hash(
            current.password_hash,
            current=req.body.current_password,
            new=req.body.new_password,
            bcrypt_cost=req.settings.bcrypt_cost,
        )
    except Forbidden:
        req.audit_failure(
            "user.password.change_failed", target_type="user", target_id=str(current.id)
        )
        raise
    async with req.transaction():
        user = await req.db.get(User, req.me.user_id)
        if user is None:
            raise Unauthenticated("authentication required")
        await auth_service.replace_password(
            req.db, user, expected_hash=current.password_hash, new_hash=new_hash
        )
        await req.audit("user.password.changed", target_type="user", target_id=str(user.id))
        if req.me.via != "session":
            return None
        return await start_session(req, user, method="password_change")
