"""``/api/client/account/…``: Pterodactyl's e-mail and password changes, API keys and
two-factor routes, over ours (``mail_links.py``, ``auth.py``, ``api_keys.py``, ``mfa.py``).

Our rules decide, never looser: what our API manages from a signed-in browser session only
(the e-mail address, keys, second factors) is refused to every API key here too (403), and
turning 2FA off takes a code as well as the password. The password change takes the current
password, as ours, from a session or a ``write`` key. Rate limits and audit records are the
routes' we call. Wrong passwords get Pterodactyl's 400s.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, ValidationError

from control_plane.api import api_keys, auth, mail_links, mfa
from control_plane.api.compat.envelope import CompatObject, collection, item, timestamp
from control_plane.api.compat.errors import DisplayError
from control_plane.api.compat.ids import ACCOUNT_IDS
from control_plane.api.routing import ApiRequest, ApiRoutes
from control_plane.errors import Conflict, Forbidden, InvalidRequest
from control_plane.schemas.api_keys import ApiKeyCreate, ApiKeyCreated, ApiKeyList, ApiKeyOut
from control_plane.schemas.auth import EmailChangeIn, PasswordChangeIn
from control_plane.schemas.common import Input
from control_plane.schemas.mfa import RecoveryCodesOut, TotpConfirmIn, TotpEnableIn, TotpSetupOut
from control_plane.security.passwords import MAX_LENGTH, MIN_LENGTH
from control_plane.security.sessions import csrf_matches
from control_plane.services.auth import WRONG_PASSWORD
from shared.errors import ErrorDetail

routes = ApiRoutes("pterodactyl client", path_ids=ACCOUNT_IDS)
ACCOUNT = "/api/client/account"
KEYS = ACCOUNT + "/api-keys"
TWO_FACTOR = ACCOUNT + "/two-factor"
CSRF_HEADER = "X-CSRF-Token"
# What a key made here may do: all its owner may, never administration (a Pterodactyl
# client key has no such notion; an administrator makes one on our own route).
CLIENT_KEY_SCOPES = ["read", "write"]


class InvalidPassword(DisplayError):
    code = "InvalidPasswordProvidedException"


class BadRequest(DisplayError):
    code = "BadRequestHttpException"


class EmailChange(Input):
    email: str = Field(min_length=3, max_length=254)
    password: str = Field(min_length=1, max_length=MAX_LENGTH)


class PasswordChange(Input):
    current_password: str = Field(min_length=1, max_length=MAX_LENGTH)
    password: str = Field(min_length=MIN_LENGTH, max_length=MAX_LENGTH)
    password_confirmation: str = Field(max_length=MAX_LENGTH)


class KeyCreate(Input):
    # Our key names are at most 64 characters (Pterodactyl allows 500).
    description: str = Field(min_length=1, max_length=64)
    allowed_ips: list[str] = Field(default_factory=list, max_length=32)


class TwoFactorEnable(Input):
    code: str = Field(min_length=6, max_length=32)
    password: str = Field(min_length=1, max_length=MAX_LENGTH)


class TwoFactorDisable(Input):
    password: str = Field(min_length=1, max_length=MAX_LENGTH)
    # Pterodactyl asks the password alone; ours a current code (or a recovery code) too.
    code: str = Field(min_length=6, max_length=32)


def _wrong_password() -> InvalidPassword:
    return InvalidPassword("The password provided was not valid for this account.")


@routes.put(ACCOUNT + "/email", summary="Pterodactyl: change my e-mail address (password "
            "needed; with mail, once the new address is verified)", body=EmailChange,
            status=204, rate_limit="sensitive", transactional=False, session_only=True,
            allow_unverified=True)  # fmt: skip
async def update_email(req: ApiRequest[Any, Any]) -> None:
    body: EmailChange = req.body
    req.body = EmailChangeIn(email=body.email, current_password=body.password)
    try:
        await mail_links.change_email(req)
    except InvalidRequest as err:
        if err.message == WRONG_PASSWORD:
            raise _wrong_password() from err
        raise


@routes.put(ACCOUNT + "/password", summary="Pterodactyl: change my password (every session "
            "ends; a browser gets a new one)", body=PasswordChange, status=204,
            rate_limit="authentication", transactional=False)  # fmt: skip
async def update_password(req: ApiRequest[Any, Any]) -> None:
    body: PasswordChange = req.body
    if body.password != body.password_confirmation:
        unconfirmed = ErrorDetail(
            loc=["password"], msg="The password confirmation does not match.", type="confirmed"
        )
        raise InvalidRequest("invalid request body", details=[unconfirmed])
    req.body = PasswordChangeIn(current_password=body.current_password, new_password=body.password)
    try:
        await auth.change_password(req)
    except Forbidden as err:
        raise _wrong_password() from err
    except InvalidRequest as err:
        # Our password rules (length, common passwords …): the field is ``password``.
        problem = ErrorDetail(loc=["password"], msg=err.message, type="password")
        raise InvalidRequest("invalid request body", details=[problem]) from err


def _key(key: ApiKeyOut) -> dict[str, Any]:
    return {
        "identifier": key.prefix,
        "description": key.name,
        "allowed_ips": key.allowed_ips,
        "last_used_at": timestamp(key.last_used_at),
        "created_at": timestamp(key.created_at),
    }


@routes.get(KEYS, summary="Pterodactyl: my client API keys (ptlc_)", response=CompatObject)
async def list_keys(req: ApiRequest[Any, Any]) -> dict[str, Any]:
    listed = await api_keys.list_keys(req)
    assert isinstance(listed, ApiKeyList)
    return collection("api_key", [_key(k) for k in listed.data if k.kind == "client"])


@routes.post(KEYS, summary="Pterodactyl: make a client API key (ptlc_; shown once, in "
             "meta.secret_token)", body=KeyCreate, response=CompatObject,
             session_only=True)  # fmt: skip
async def create_key(req: ApiRequest[Any, Any]) -> dict[str, Any]:
    body: KeyCreate = req.body
    try:
        req.body = ApiKeyCreate.model_validate(
            {
                "name": body.description,
                "scopes": CLIENT_KEY_SCOPES,
                "allowed_ips": body.allowed_ips,
                "kind": "client",
            }
        )
    except ValidationError as err:
        # Only the addresses can be wrong by now.
        refused = ErrorDetail(loc=["allowed_ips"], msg="not an IP address or network", type="ip")
        raise InvalidRequest("invalid request body", details=[refused]) from err
    made = await api_keys.create_key(req)
    assert isinstance(made, ApiKeyCreated)
    answer = item("api_key", _key(made))
    answer["meta"] = {"secret_token": made.key}
    return answer


@routes.delete(KEYS + "/{key_id}", summary="Pterodactyl: revoke one of my client API keys",
               status=204, session_only=True)  # fmt: skip
async def delete_key(req: ApiRequest[Any, Any]) -> None:
    await api_keys.revoke_key(req)


def _require_csrf(req: ApiRequest[Any, Any]) -> None:
    """This GET starts an enrolment (our POST does): it asks for the CSRF header too, so no
    other site can make a signed-in browser replace a pending secret."""
    session_id = req.me.session_id
    presented = req.http.headers.get(CSRF_HEADER)
    secret = req.settings.auth_secret or ""
    if session_id is None or not csrf_matches(secret, session_id, presented):
        raise Forbidden(f"missing or wrong {CSRF_HEADER} header")


@routes.get(TWO_FACTOR, summary="Pterodactyl: start two-factor enrolment (a new secret and "
            "its otpauth:// URI)", response=CompatObject, rate_limit="sensitive",
            session_only=True, writes=True, allow_enrolment=True)  # fmt: skip
async def two_factor_setup(req: ApiRequest[Any, Any]) -> dict[str, Any]:
    _require_csrf(req)
    try:
        started = await mfa.totp_setup(req)
    except Conflict as err:
        raise BadRequest("Two-factor authentication is already enabled on this account.") from err
    assert isinstance(started, TotpSetupOut)
    return {"data": {"image_url_data": started.otpauth_uri, "secret": started.secret}}


@routes.post(TWO_FACTOR, summary="Pterodactyl: turn two-factor on (a code and the password); "
             "the recovery tokens, once", body=TwoFactorEnable, response=CompatObject,
             rate_limit="authentication", session_only=True, allow_enrolment=True,
             transactional=False)  # fmt: skip
async def two_factor_enable(req: ApiRequest[Any, Any]) -> dict[str, Any]:
    body: TwoFactorEnable = req.body
    req.body = TotpEnableIn(code=body.code, password=body.password)
    try:
        codes = await mfa.totp_enable(req)
    except Forbidden as err:
        raise BadRequest("The password or the code provided was not valid.") from err
    assert isinstance(codes, RecoveryCodesOut)
    return {"object": "recovery_tokens", "attributes": {"tokens": codes.recovery_codes}}


async def _disable(req: ApiRequest[Any, Any]) -> None:
    body: TwoFactorDisable = req.body
    req.body = TotpConfirmIn(code=body.code, password=body.password)
    try:
        await mfa.totp_disable(req)
    except Forbidden as err:
        raise BadRequest("The password or the code provided was not valid.") from err


@routes.post(TWO_FACTOR + "/disable", summary="Pterodactyl: turn two-factor off (the password "
             "and a code or recovery code)", body=TwoFactorDisable, status=204,
             rate_limit="sensitive", session_only=True, transactional=False)  # fmt: skip
async def two_factor_disable(req: ApiRequest[Any, Any]) -> None:
    await _disable(req)


@routes.delete(TWO_FACTOR, summary="Pterodactyl: turn two-factor off (newer versions' route)",
               body=TwoFactorDisable, status=204, rate_limit="sensitive", session_only=True,
               transactional=False)  # fmt: skip
async def two_factor_delete(req: ApiRequest[Any, Any]) -> None:
    await _disable(req)
