"""Passkeys: register, list, rename and delete them; sign in with one.

Each ceremony's challenge is kept server-side, bound to the browser by an HttpOnly
``SameSite=Strict`` cookie, and used once within five minutes. A passkey sign-in is complete
on its own (possession plus user verification) and ends in ``start_session`` like every other.
"""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any

import webauthn
from webauthn.helpers import bytes_to_base64url

from control_plane.api.auth import start_session
from control_plane.api.routing import Access, ApiRequest, ApiRoutes
from control_plane.db.models import LoginChallenge, User
from control_plane.errors import InvalidRequest, Unauthenticated
from control_plane.schemas.auth import SessionOut
from control_plane.schemas.passkeys import (
    PasskeyList,
    PasskeyOut,
    PasskeyRegisterIn,
    PasskeyRenameIn,
    PasskeySignInIn,
    WebAuthnOptionsOut,
)
from control_plane.security import passkeys
from control_plane.services import challenges
from control_plane.services import passkeys as passkey_service

routes = ApiRoutes("passkeys")
CEREMONY_LIFETIME = dt.timedelta(minutes=5)
COOKIE = "stellar_webauthn"
SECURE_COOKIE = "__Host-stellar_webauthn"
REGISTER = "passkey.register"
SIGN_IN = "passkey.sign_in"


def _rp(req: ApiRequest[Any, Any]) -> passkeys.RelyingParty:
    s = req.settings
    return passkeys.RelyingParty(s.passkey_rp_id, s.webauthn_rp_name, s.passkey_origin)


def _cookie(req: ApiRequest[Any, Any]) -> str:
    return SECURE_COOKIE if req.settings.secure_cookies else COOKIE


async def _remember(
    req: ApiRequest[Any, Any], kind: str, challenge: bytes, user_id: Any = None
) -> None:
    binding = secrets.token_urlsafe(32)
    await challenges.create(
        req.db,
        kind=kind,
        lookup=binding,
        binding=binding,
        ttl=CEREMONY_LIFETIME,
        user_id=user_id,
        data={"challenge": bytes_to_base64url(challenge)},
    )
    req.set_cookie(
        _cookie(req),
        binding,
        max_age=int(CEREMONY_LIFETIME.total_seconds()),
        httponly=True,
        samesite="Strict",
        secure=req.settings.secure_cookies,
        path="/",
    )


async def _recall(req: ApiRequest[Any, Any], kind: str) -> tuple[LoginChallenge, bytes] | None:
    """This browser's pending challenge of ``kind``, used up; None if there is none."""
    binding = req.http.cookies.get(_cookie(req))
    if not binding:
        return None
    found = await challenges.find(req.db, kind=kind, lookup=binding, binding=binding)
    if found is None or not await challenges.consume(req.db, found):
        return None
    req.delete_cookie(_cookie(req), path="/")
    return found, webauthn.base64url_to_bytes(str(found.data["challenge"]))


@routes.post(
    "/api/v1/account/passkeys/options",
    summary="Start registering a passkey: options for navigator.credentials.create",
    response=WebAuthnOptionsOut,
    rate_limit="sensitive",
    allow_enrolment=True,
)
async def registration_options(req: ApiRequest[Any, Any]) -> WebAuthnOptionsOut:
    user = await req.db.get(User, req.me.user_id)
    if user is None:
        raise Unauthenticated("authentication required")
    existing = [p.credential_id for p in await passkey_service.of_user(req.db, user.id)]
    ceremony = passkeys.registration_options(
        _rp(req), user_handle=user.id.bytes, user_name=user.email, existing=existing
    )
    await _remember(req, REGISTER, ceremony.challenge, user.id)
    return WebAuthnOptionsOut(options=ceremony.options)


@routes.post(
    "/api/v1/account/passkeys",
    summary="Finish registering a passkey with the authenticator's answer",
    body=PasskeyRegisterIn,
    response=PasskeyOut,
    status=201,
    allow_enrolment=True,
)
async def register_passkey(req: ApiRequest[PasskeyRegisterIn, Any]) -> PasskeyOut:
    recalled = await _recall(req, REGISTER)
    if recalled is None or recalled[0].user_id != req.me.user_id:
        raise InvalidRequest("start with the options step, from this browser")
    try:
        registered = passkeys.verify_registration(_rp(req), req.body.credential, recalled[1])
    except passkeys.PasskeyError as err:
        req.audit_failure("user.passkey.register_failed", details={"reason": str(err)[:200]})
        raise InvalidRequest(str(err)) from err
    row = await passkey_service.add(req.db, req.me.user_id, registered, name=req.body.name)
    await req.audit("user.passkey.added", target_type="passkey", target_id=str(row.id))
    return PasskeyOut.model_validate(row)


@routes.get("/api/v1/account/passkeys", summary="My passkeys", response=PasskeyList)
async def list_passkeys(req: ApiRequest[Any, Any]) -> PasskeyList:
    rows = await passkey_service.of_user(req.db, req.me.user_id)
    return PasskeyList(data=[PasskeyOut.model_validate(row) for row in rows])


@routes.patch(
    "/api/v1/account/passkeys/{passkey_id}",
    summary="Rename one of my passkeys",
    body=PasskeyRenameIn,
    response=PasskeyOut,
)
async def rename_passkey(req: ApiRequest[PasskeyRenameIn, Any]) -> PasskeyOut:
    row = await passkey_service.owned(req.db, req.me.user_id, req.uuid_param("passkey_id"))
    if req.body.name is None:
        raise InvalidRequest("give the passkey a name")
    row.name = req.body.name
    await req.audit("user.passkey.renamed", target_type="passkey", target_id=str(row.id))
    return PasskeyOut.model_validate(row)


@routes.delete(
    "/api/v1/account/passkeys/{passkey_id}",
    summary="Delete one of my passkeys (not the last way to sign in)",
    status=204,
    rate_limit="sensitive",
)
async def delete_passkey(req: ApiRequest[Any, Any]) -> None:
    row = await passkey_service.owned(req.db, req.me.user_id, req.uuid_param("passkey_id"))
    user = await req.db.get(User, req.me.user_id)
    if user is None:
        raise Unauthenticated("authentication required")
    await passkey_service.remove(req.db, user, row)
    await req.audit("user.passkey.deleted", target_type="passkey", target_id=str(row.id))


@routes.post(
    "/api/v1/auth/passkey/options",
    summary="Start signing in with a passkey: options for navigator.credentials.get",
    access=Access.PUBLIC,
    response=WebAuthnOptionsOut,
    rate_limit="authentication",
)
async def sign_in_options(req: ApiRequest[Any, Any]) -> WebAuthnOptionsOut:
    ceremony = passkeys.authentication_options(_rp(req))
    await _remember(req, SIGN_IN, ceremony.challenge)
    return WebAuthnOptionsOut(options=ceremony.options)


@routes.post(
    "/api/v1/auth/passkey",
    summary="Sign in with a passkey (complete: possession and user verification)",
    access=Access.PUBLIC,
    body=PasskeySignInIn,
    response=SessionOut,
    rate_limit="authentication",
)
async def sign_in(req: ApiRequest[PasskeySignInIn, Any]) -> SessionOut:
    credential = req.body.credential

    def fail(reason: str, passkey_id: Any = None) -> Unauthenticated:
        req.audit_failure(
            "user.login.failed",
            target_type="passkey" if passkey_id else None,
            target_id=str(passkey_id) if passkey_id else None,
            details={"method": "passkey", "reason": reason},
        )
        return Unauthenticated("the passkey was not accepted")

    recalled = await _recall(req, SIGN_IN)
    if recalled is None:
        raise fail("no challenge for this browser")
    try:
        row = await passkey_service.by_credential_id(req.db, passkeys.credential_id_of(credential))
    except passkeys.PasskeyError as err:
        raise fail("malformed") from err
    user = await req.db.get(User, row.user_id) if row else None
    if row is None or user is None or user.disabled:
        raise fail("unknown passkey")
    handle = passkeys.user_handle_of(credential)
    if handle is not None and handle != user.id.bytes:
        raise fail("user handle mismatch")
    try:
        count = passkeys.verify_assertion(
            _rp(req),
            credential,
            recalled[1],
            public_key=row.public_key,
            sign_count=row.sign_count,
        )
    except passkeys.CounterRegression as err:
        req.audit_failure(
            "user.passkey.counter_regression",
            target_type="passkey",
            target_id=str(row.id),
            details={"reason": str(err)},
        )
        raise fail("counter regression", row.id) from err
    except passkeys.PasskeyError as err:
        raise fail(str(err)[:200], row.id) from err
    if not await passkey_service.record_use(req.db, row, count):
        raise fail("used concurrently", row.id)
    return await start_session(req, user, method="passkey")
