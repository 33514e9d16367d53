"""Sign in with Google, GitHub or Discord; link and unlink those accounts.

The browser that starts a flow gets an HttpOnly ``SameSite=Lax`` binding cookie (Lax, because
the provider sends the browser back with a cross-site navigation); the ``state`` it carries is
honoured only together with that cookie, once, within ten minutes. Linking is started from a
signed-in session (CSRF-protected POST) and the user it links to is stored with the state;
it finishes only in a live session of that user (the callback page's same-origin call carries
the ``SameSite=Strict`` session cookie), so a session ended meanwhile cannot finish a link it
started. A linked account signs in only the user it is linked to — an e-mail address the
provider reports never chooses a user.
"""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any

from control_plane.api.auth import start_pending_session, start_session
from control_plane.api.routing import Access, ApiRequest, ApiRoutes
from control_plane.db.models import LoginChallenge, User
from control_plane.errors import Conflict, Forbidden, InvalidRequest, Unauthenticated
from control_plane.keys import HTTP
from control_plane.schemas.oauth import (
    IdentityList,
    IdentityOut,
    LinkedOut,
    OAuthCallbackOut,
    OAuthCallbackQuery,
    OAuthStartIn,
    OAuthStartOut,
    ProviderList,
    UnlinkIn,
)
from control_plane.security import oauth
from control_plane.services import challenges, mfa
from control_plane.services import oauth as oauth_service

routes = ApiRoutes("oauth")
CALLBACK = "/api/v1/auth/oauth/callback"
# Where the provider sends the browser back (the redirect URI registered with it): a page of
# the panel (control_plane/web/auth_pages.py) that hands the code and state to CALLBACK.
CALLBACK_PAGE = "/oauth/callback"
FLOW_LIFETIME = dt.timedelta(minutes=10)
COOKIE = "stellar_oauth"
SECURE_COOKIE = "__Host-stellar_oauth"


def _cookie(req: ApiRequest[Any, Any]) -> str:
    return SECURE_COOKIE if req.settings.secure_cookies else COOKIE


def _provider(req: ApiRequest[Any, Any], name: str) -> oauth.Provider:
    provider = oauth.configured_providers(req.settings).get(name)
    if provider is None:
        raise InvalidRequest(f"sign-in with {name} is not configured here")
    return provider


def _redirect_uri(req: ApiRequest[Any, Any]) -> str:
    # Production always has STELLAR_PUBLIC_URL; a development panel answers where it is reached.
    base = req.settings.public_url or f"{req.http.scheme}://{req.http.host}"
    return base + CALLBACK_PAGE


async def _begin(
    req: ApiRequest[OAuthStartIn, Any], *, kind: str, user_id: Any = None
) -> OAuthStartOut:
    provider = _provider(req, req.body.provider)
    flow = oauth.Flow.new()
    binding = secrets.token_urlsafe(32)
    redirect_uri = _redirect_uri(req)
    await challenges.create(
        req.db,
        kind=kind,
        lookup=flow.state,
        binding=binding,
        ttl=FLOW_LIFETIME,
        user_id=user_id,
        data={
            "provider": provider.name,
            "verifier": flow.verifier,
            "nonce": flow.nonce,
            "redirect_uri": redirect_uri,
        },
    )
    req.set_cookie(
        _cookie(req),
        binding,
        max_age=int(FLOW_LIFETIME.total_seconds()),
        httponly=True,
        samesite="Lax",
        secure=req.settings.secure_cookies,
        path="/",
    )
    return OAuthStartOut(authorize_url=oauth.authorize_url(provider, flow, redirect_uri))


@routes.get(
    "/api/v1/auth/oauth/providers",
    summary="The external sign-in providers configured here",
    access=Access.PUBLIC,
    response=ProviderList,
)
async def list_providers(req: ApiRequest[Any, Any]) -> ProviderList:
    return ProviderList(providers=list(oauth.configured_providers(req.settings)))


@routes.post(
    "/api/v1/auth/oauth/start",
    summary="Start signing in with a provider: returns the URL to send the browser to",
    access=Access.PUBLIC,
    body=OAuthStartIn,
    response=OAuthStartOut,
    rate_limit="authentication",
)
async def start_login(req: ApiRequest[OAuthStartIn, Any]) -> OAuthStartOut:
    return await _begin(req, kind="oauth.login")


@routes.post(
    "/api/v1/account/oauth/link",
    summary="Start linking a provider account to mine: returns the URL to send the browser to",
    body=OAuthStartIn,
    response=OAuthStartOut,
    rate_limit="sensitive",
)
async def start_link(req: ApiRequest[OAuthStartIn, Any]) -> OAuthStartOut:
    return await _begin(req, kind="oauth.link", user_id=req.me.user_id)


async def _challenge(req: ApiRequest[Any, OAuthCallbackQuery]) -> LoginChallenge:
    binding = req.http.cookies.get(_cookie(req))
    for kind in ("oauth.login", "oauth.link"):
        found = await challenges.find(req.db, kind=kind, lookup=req.query.state, binding=binding)
        if found is not None:
            return found
    req.audit_failure("user.login.failed", details={"method": "oauth", "reason": "state"})
    raise Unauthenticated("this sign-in was not started in this browser, or it expired")


async def _account(
    req: ApiRequest[Any, OAuthCallbackQuery], provider: oauth.Provider, data: dict[str, Any]
) -> oauth.ExternalAccount:
    query = req.query
    if query.error or not query.code:
        raise oauth.OAuthError(f"the provider refused: {query.error or 'no code'}")
    http = req.http.app[HTTP]
    tokens = await oauth.exchange_code(
        http,
        provider,
        code=query.code,
        verifier=str(data["verifier"]),
        redirect_uri=str(data["redirect_uri"]),
    )
    return await oauth.fetch_account(http, provider, tokens, nonce=str(data["nonce"]))


@routes.get(
    CALLBACK,
    summary="Finish a provider sign-in (the page the provider sends the browser back to calls "
    "it): signs in, or links the account",
    access=Access.PUBLIC,
    query=OAuthCallbackQuery,
    response=OAuthCallbackOut,
    rate_limit="authentication",
    writes=True,
)
async def callback(req: ApiRequest[Any, OAuthCallbackQuery]) -> OAuthCallbackOut:
    challenge = await _challenge(req)
    data = dict(challenge.data)
    provider = _provider(req, str(data["provider"]))
    method = f"oauth:{provider.name}"
    linking = challenge.kind == "oauth.link"
    failed = "user.oauth.link_failed" if linking else "user.login.failed"
    try:
        account = await _account(req, provider, data)
    except oauth.OAuthError as err:
        req.audit_failure(failed, details={"method": method, "reason": str(err)[:200]})
        raise Unauthenticated(f"signing in with {provider.name} failed: {err}") from err
    if not await challenges.consume(req.db, challenge):
        raise Unauthenticated("this sign-in was already completed")
    req.delete_cookie(_cookie(req), path="/")
    if linking:
        return OAuthCallbackOut(await _link(req, challenge, provider, account))
    user = await oauth_service.user_for(req.db, provider.name, account.subject)
    if user is None:
        req.audit_failure(failed, details={"method": method, "reason": "not linked"})
        raise Unauthenticated(
            f"no account here is linked to this {provider.name} account: sign in another way "
            "and link it first"
        )
    skips = req.settings.oauth_skips_2fa
    if not skips and await mfa.passkey_is_the_second_factor(req.db, user, req.settings.require_2fa):
        req.audit_failure(failed, details={"method": method, "reason": "passkey"})
        raise Forbidden(mfa.PASSKEY_IS_THE_SECOND_FACTOR)
    methods = await mfa.second_factor_methods(req.db, user.id)
    if methods and not skips:
        return OAuthCallbackOut(await start_pending_session(req, user, methods=methods))
    return OAuthCallbackOut(await start_session(req, user, method=method))


async def _link(
    req: ApiRequest[Any, Any],
    challenge: LoginChallenge,
    provider: oauth.Provider,
    account: oauth.ExternalAccount,
) -> LinkedOut:
    user = await req.db.get(User, challenge.user_id) if challenge.user_id else None
    if user is None or user.disabled:
        raise Unauthenticated("the account this link was started for is gone")
    # Only in a live session of that account: one ended meanwhile (signed out everywhere,
    # disabled, password changed, an administrator taking back what an intruder added)
    # must not finish a link it started.
    caller = req.caller
    if caller is None or caller.via != "session" or caller.mfa_pending or caller.user_id != user.id:
        req.audit_failure(
            "user.oauth.link_failed",
            details={"method": f"oauth:{provider.name}", "reason": "session ended"},
        )
        raise Unauthenticated(
            "the session this link was started in has ended: sign in again and link again"
        )
    try:
        identity = await oauth_service.link(req.db, user.id, provider.name, account)
    except Conflict:
        req.audit_failure(
            "user.oauth.link_failed",
            details={"method": f"oauth:{provider.name}", "reason": "conflict"},
        )
        raise
    await req.audit(
        "user.oauth.linked",
        target_type="user",
        target_id=str(user.id),
        details={"provider": provider.name},
    )
    return LinkedOut(linked=IdentityOut.model_validate(identity))


@routes.get(
    "/api/v1/account/oauth",
    summary="The provider accounts linked to mine",
    response=IdentityList,
)
async def list_identities(req: ApiRequest[Any, Any]) -> IdentityList:
    rows = await oauth_service.identities(req.db, req.me.user_id)
    return IdentityList(data=[IdentityOut.model_validate(row) for row in rows])


@routes.post(
    "/api/v1/account/oauth/unlink",
    summary="Unlink a provider account (not the last way to sign in)",
    body=UnlinkIn,
    status=204,
    rate_limit="sensitive",
)
async def unlink(req: ApiRequest[UnlinkIn, Any]) -> None:
    user = await req.db.get(User, req.me.user_id)
    if user is None:
        raise Unauthenticated("authentication required")
    await oauth_service.unlink(req.db, user, provider=req.body.provider)
    await req.audit(
        "user.oauth.unlinked",
        target_type="user",
        target_id=str(user.id),
        details={"provider": req.body.provider},
    )
