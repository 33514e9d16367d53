"""Two-factor authentication: enrolment and management of TOTP, and a sign-in's second step.

Changing 2FA settings takes the current password and a code; wrong ones are audited. The
second step of a sign-in turns the browser's pending session into a full one with a new token.

Every code is checked within the account's allowance of wrong ones
(:mod:`control_plane.services.mfa_lockout`), in a transaction that commits a wrong code's
record before the refusal is sent: the routes that check codes manage their transactions.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from control_plane.api.auth import spend_password_try, start_session
from control_plane.api.routing import ApiRequest, ApiRoutes
from control_plane.db.models import User
from control_plane.db.session import transaction
from control_plane.errors import ApiError, Conflict, Forbidden, RateLimited, Unauthenticated
from control_plane.keys import READ_SESSIONS, SECRET_BOX, WALL_CLOCK
from control_plane.schemas.auth import SessionOut
from control_plane.schemas.mfa import (
    RecoveryCodesOut,
    SecondFactorIn,
    TotpConfirmIn,
    TotpEnableIn,
    TotpSetupOut,
    TotpStatus,
)
from control_plane.security.encryption import SecretBox
from control_plane.security.passwords import verify_password
from control_plane.services import mfa, mfa_lockout

routes = ApiRoutes("two-factor")
T = TypeVar("T")


class EncryptionMissing(ApiError):
    """TOTP secrets are stored encrypted; without STELLAR_ENCRYPTION_KEYS there is no 2FA."""

    status = 503
    code = "not_configured"


class SecondFactorLocked(RateLimited):
    """Too many wrong codes for this account: every code is refused for a while."""

    code = "second_factor_locked"


def _box(req: ApiRequest[Any, Any]) -> SecretBox:
    box = req.http.app[SECRET_BOX]
    if not box.is_configured:
        # Development without STELLAR_ENCRYPTION_KEYS: say so rather than fail obscurely.
        raise EncryptionMissing(
            "two-factor authentication needs STELLAR_ENCRYPTION_KEYS; ask the administrators"
        )
    return box


def _now(req: ApiRequest[Any, Any]) -> float:
    return req.http.app[WALL_CLOCK]()


async def _password_ok(req: ApiRequest[Any, Any], password: str) -> bool:
    """Check the caller's password before the route's transaction begins: bcrypt takes a
    while and must never hold a database lock."""
    async with transaction(req.http.app[READ_SESSIONS]) as db:
        user = await db.get(User, req.me.user_id)
        hashed = user.password_hash if user else None
    if user is not None:
        await spend_password_try(req, user.email, user, failure="user.2fa.password_refused")
    return await verify_password(password, hashed, req.settings.bcrypt_cost)


async def _account(req: ApiRequest[Any, Any]) -> User:
    """The signed-in user (the route table lets only browser sessions manage 2FA)."""
    user = await req.db.get(User, req.me.user_id)
    if user is None:
        raise Unauthenticated("authentication required")
    return user


def _locked(lockout: mfa_lockout.Lockout, now: dt.datetime) -> SecondFactorLocked:
    wait = max(1, math.ceil((lockout.until - now).total_seconds()))
    minutes = math.ceil(wait / 60)
    left = f"{minutes} min" if minutes < 120 else f"{math.ceil(minutes / 60)} h"
    return SecondFactorLocked(
        "too many wrong codes for this account: every code, even a right one, is refused until "
        f"{lockout.until:%Y-%m-%d %H:%M} UTC (about {left})",
        headers={"Retry-After": str(wait)},
    )


async def _within_allowance(
    req: ApiRequest[Any, Any],
    user: User,
    check: Callable[[], Awaitable[T | None]],
    failure: str,
    details: dict[str, Any] | None = None,
) -> T | None:
    """``check`` a code unless the account is locked; count and audit it if it is wrong.

    Runs in the route's transaction, which must commit (end without an exception) for a
    wrong code to be counted. While locked, ``check`` never runs: SecondFactorLocked (429).
    """
    now = dt.datetime.fromtimestamp(_now(req), dt.UTC)
    target: dict[str, Any] = {"target_type": "user", "target_id": str(user.id)}
    await mfa_lockout.hold(req.db, user.id)
    lockout = await mfa_lockout.current_lockout(req.db, user.id, now)
    if lockout is not None:
        req.audit_failure(
            failure, details={**(details or {}), "reason": SecondFactorLocked.code}, **target
        )
        raise _locked(lockout, now)
    result = await check()
    if result is not None:
        await mfa_lockout.forgive_session(req.db, user.id, req.me.session_id)
        return result
    started = await mfa_lockout.record_failure(
        req.db, user.id, session_id=req.me.session_id, now=now
    )
    await req.audit(failure, details=details or {}, **target)
    if started is not None:
        allowance = started.allowance
        await req.audit(
            "user.2fa.locked",
            details={
                "until": started.until.isoformat(),
                "failures": allowance.failures,
                "window_seconds": int(allowance.window.total_seconds()),
            },
            **target,
        )
    return None


async def _confirm(
    req: ApiRequest[TotpConfirmIn, Any], user: User, action: str, *, password_ok: bool
) -> bool:
    """Whether the password (checked before) and then the code (TOTP or recovery) are right."""
    failure = f"user.2fa.{action}_failed"
    if not password_ok:
        req.audit_failure(failure, target_type="user", target_id=str(user.id))
        return False
    box, code, unix_time = _box(req), req.body.code, _now(req)
    method = await _within_allowance(
        req,
        user,
        lambda: mfa.verify_any_code(req.db, box, user.id, code, unix_time=unix_time),
        failure,
    )
    return method is not None


@routes.get(
    "/api/v1/account/2fa",
    summary="Whether two-factor authentication is on",
    response=TotpStatus,
    allow_enrolment=True,
)
async def totp_status(req: ApiRequest[Any, Any]) -> TotpStatus:
    user = await req.db.get(User, req.me.user_id)
    if user is None:
        raise Unauthenticated("authentication required")
    active = await mfa.active_credential(req.db, user.id)
    pending = await mfa.setup_pending(req.db, user.id)
    return TotpStatus(
        enabled=active is not None,
        setup_pending=pending,
        recovery_codes_left=await mfa.remaining_recovery_codes(req.db, user.id) if active else 0,
        required=mfa.policy_applies(user.is_admin, req.settings.require_2fa),
    )


@routes.post(
    "/api/v1/account/2fa/setup",
    summary="Start TOTP enrolment: a new secret as otpauth:// URI and QR code",
    response=TotpSetupOut,
    rate_limit="sensitive",
    allow_enrolment=True,
)
async def totp_setup(req: ApiRequest[Any, Any]) -> TotpSetupOut:
    user = await _account(req)
    enrolment = await mfa.begin_setup(req.db, _box(req), user, issuer=req.settings.totp_issuer)
    await req.audit("user.2fa.setup_started", target_type="user", target_id=str(user.id))
    return TotpSetupOut(
        secret=enrolment.secret, otpauth_uri=enrolment.uri, qr_code=enrolment.qr_svg_data_uri
    )


@routes.post(
    "/api/v1/account/2fa/enable",
    summary="Turn TOTP on with a code from the app and the password; returns recovery codes",
    body=TotpEnableIn,
    response=RecoveryCodesOut,
    rate_limit="authentication",
    allow_enrolment=True,
    transactional=False,
)
async def totp_enable(req: ApiRequest[TotpEnableIn, Any]) -> RecoveryCodesOut:
    password_ok = await _password_ok(req, req.body.password)
    box, code, unix_time = _box(req), req.body.code, _now(req)
    async with req.transaction():
        user = await _account(req)
        if not password_ok:
            req.audit_failure("user.2fa.enable_failed", target_type="user", target_id=str(user.id))
            raise Forbidden("wrong password or code")
        codes = await _within_allowance(
            req,
            user,
            lambda: mfa.enable(req.db, box, user.id, code, unix_time=unix_time),
            "user.2fa.enable_failed",
        )
        if codes is not None:
            await req.audit("user.2fa.enabled", target_type="user", target_id=str(user.id))
            return RecoveryCodesOut(recovery_codes=codes)
    raise Forbidden("wrong password or code")


@routes.post(
    "/api/v1/account/2fa/recovery-codes",
    summary="Replace the recovery codes (password and a code); the old ones stop working",
    body=TotpConfirmIn,
    response=RecoveryCodesOut,
    rate_limit="sensitive",
    transactional=False,
)
async def totp_recovery_codes(req: ApiRequest[TotpConfirmIn, Any]) -> RecoveryCodesOut:
    password_ok = await _password_ok(req, req.body.password)
    async with req.transaction():
        user = await _account(req)
        if await mfa.active_credential(req.db, user.id) is None:
            raise Conflict("two-factor authentication is off")
        if await _confirm(req, user, "recovery_codes", password_ok=password_ok):
            codes = await mfa.replace_recovery_codes(req.db, user.id)
            await req.audit(
                "user.2fa.recovery_codes_replaced", target_type="user", target_id=str(user.id)
            )
            return RecoveryCodesOut(recovery_codes=codes)
    raise Forbidden("wrong password or code")


@routes.post(
    "/api/v1/account/2fa/disable",
    summary="Turn TOTP off (password and a code or recovery code)",
    body=TotpConfirmIn,
    rate_limit="sensitive",
    status=204,
    transactional=False,
)
async def totp_disable(req: ApiRequest[TotpConfirmIn, Any]) -> None:
    password_ok = await _password_ok(req, req.body.password)
    async with req.transaction():
        user = await _account(req)
        if await mfa.active_credential(req.db, user.id) is None:
            raise Conflict("two-factor authentication is off")
        if await _confirm(req, user, "disable", password_ok=password_ok):
            await mfa.disable(req.db, user.id)
            await req.audit("user.2fa.disabled", target_type="user", target_id=str(user.id))
            return
    raise Forbidden("wrong password or code")


@routes.post(
    "/api/v1/auth/2fa",
    summary="Finish signing in with a TOTP code or a recovery code",
    body=SecondFactorIn,
    response=SessionOut,
    rate_limit="authentication",
    allow_mfa_pending=True,
    transactional=False,
)
async def second_factor(req: ApiRequest[SecondFactorIn, Any]) -> SessionOut:
    me = req.me
    if not me.mfa_pending:
        raise Conflict("this session owes no second factor")
    box, code, unix_time = _box(req), req.body.code, _now(req)
    kind = "totp" if code.strip().isdigit() else "recovery"
    async with req.transaction():
        user = await req.db.get(User, me.user_id)
        if user is None:
            raise Unauthenticated("authentication required")
        method = await _within_allowance(
            req,
            user,
            lambda: mfa.verify_any_code(req.db, box, user.id, code, unix_time=unix_time),
            "user.login.failed",
            {"method": kind},
        )
        if method is not None:
            if method == "recovery":
                await req.audit(
                    "user.2fa.recovery_code_used", target_type="user", target_id=str(user.id)
                )
            return await start_session(req, user, method=f"password+{method}")
    raise Unauthenticated("invalid or already used code")
