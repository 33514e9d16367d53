"""Authentication middleware: session cookie (with CSRF on unsafe methods) or API key.

Runs on every request before routing decides what a route needs: it only establishes who
the caller is. A wrong CSRF token on a cookie-authenticated unsafe request is refused here,
whatever the route, and audited.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Mapping
from typing import Final

from aiohttp import hdrs, web

from control_plane.db.session import transaction
from control_plane.errors import ApiError, Forbidden, RateLimited, Unauthenticated
from control_plane.keys import (
    CALLER,
    CLIENT_IP,
    LISTING_ROUTES,
    METRICS,
    RATE_LIMITER,
    SESSIONS,
    SETTINGS,
    STATEMENT_READER,
)
from control_plane.security import api_keys
from control_plane.security.api_keys import KeyHolder, Scope, resolve_api_key
from control_plane.security.caller import Caller, anonymous_actor
from control_plane.security.client_ip import client_ip
from control_plane.security.console_tokens import ConsoleGrant
from control_plane.security.sessions import (
    SessionLookup,
    cookie_name,
    csrf_matches,
    end_session,
    lookup_session,
    session_by_id,
    touch_session,
)
from control_plane.services import audit, mfa
from control_plane.services.audit import Actor
from shared.http import Handler

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "X-CSRF-Token"
# The bucket a refused credential takes from before it is audited (the client's own).
REFUSAL_PRESET: Final = "api"


async def _audit(request: web.Request, actor: Actor, event: audit.AuditEvent) -> None:
    async with transaction(request.app[SESSIONS]) as db:
        await audit.append(db, actor, event)


async def _refusals_limited(request: web.Request, ip: str) -> ApiError | None:
    """429 once the client's ``api`` bucket is empty, else None. A refused credential is
    audited before any route's rate limit applies, and every audit row is a delivery to
    each audit webhook: nobody may write them faster than requests are allowed."""
    decision = await request.app[RATE_LIMITER].check(REFUSAL_PRESET, ip)
    if decision.allowed:
        return None
    request.app[METRICS].rate_limited.labels(REFUSAL_PRESET).inc()
    return RateLimited(
        f"too many requests; try again in {decision.headers(0)['Retry-After']} s",
        headers=decision.headers(time.time()),
    )


def _answers_kept_lists(request: web.Request) -> bool:
    """Whether the matched route answers kept lists: its authentication read brings the
    lists' versions (a route that does not need them does not pay for them)."""
    route = request.match_info.route
    resource = route.resource
    return (
        resource is not None and (route.method, resource.canonical) in request.app[LISTING_ROUTES]
    )


async def _api_key_caller(
    request: web.Request, credential: str, ip: str, user_agent: str
) -> Caller | ApiError:
    holder = await resolve_api_key(
        request.app[STATEMENT_READER], credential, ip=ip, listing=_answers_kept_lists(request)
    )
    if holder is None:
        limited = await _refusals_limited(request, ip)
        if limited is not None:
            return limited
        await _audit(
            request, anonymous_actor(ip, user_agent), audit.AuditEvent("auth.api_key.rejected")
        )
        return Unauthenticated("invalid, expired or revoked API key")
    if holder.record_use:
        async with transaction(request.app[SESSIONS]) as db:
            await api_keys.record_use(db, holder.key_id)
    return _key_caller(request, holder, ip, user_agent)


def _key_caller(request: web.Request, holder: KeyHolder, ip: str, user_agent: str) -> Caller:
    return Caller(
        holder.user_id,
        holder.email,
        holder.is_admin,
        "api_key",
        holder.scopes,
        ip,
        user_agent,
        api_key_id=holder.key_id,
        api=holder.api,
        listing_version=holder.listing_version,
        user_listing_version=holder.user_listing_version,
        must_enrol=mfa.enrolment_owed(
            holder.is_admin, holder.second_factor, request.app[SETTINGS].require_2fa
        ),
        must_verify=request.app[SETTINGS].require_email_verification and not holder.email_verified,
    )


async def _session_caller(
    request: web.Request, token: str, ip: str, user_agent: str, *, touch: bool
) -> Caller | ApiError | None:
    settings = request.app[SETTINGS]
    secret = settings.auth_secret or ""
    idle = dt.timedelta(minutes=settings.session_idle_minutes)
    found = await lookup_session(
        request.app[STATEMENT_READER],
        secret=secret,
        token=token,
        idle=idle,
        listing=_answers_kept_lists(request),
    )
    if found is None:
        return None
    if not found.live or (found.touch and touch):
        async with transaction(request.app[SESSIONS]) as db:
            if found.live:
                await touch_session(db, found.session_id)
            else:
                await end_session(db, found.session_id)
    if not found.live:
        return None
    caller = _session_as_caller(request, found, ip, user_agent)
    if request.method not in SAFE_METHODS and not csrf_matches(
        secret, found.session_id, request.headers.get(CSRF_HEADER)
    ):
        limited = await _refusals_limited(request, ip)
        if limited is not None:
            return limited
        await _audit(
            request,
            caller.actor,
            audit.AuditEvent("auth.csrf.rejected", details={"path": request.path}),
        )
        return Forbidden(f"missing or wrong {CSRF_HEADER} header")
    return caller


# What a signed-in browser may do: read and write, and administer for an administrator.
_SESSION_SCOPES: Final = frozenset({Scope.READ, Scope.WRITE})
_ADMIN_SESSION_SCOPES: Final = _SESSION_SCOPES | {Scope.ADMIN}


def _session_as_caller(
    request: web.Request, found: SessionLookup, ip: str, user_agent: str
) -> Caller:
    scopes = _ADMIN_SESSION_SCOPES if found.is_admin else _SESSION_SCOPES
    return Caller(
        found.user_id,
        found.email,
        found.is_admin,
        "session",
        scopes,
        ip,
        user_agent,
        session_id=found.session_id,
        mfa_pending=found.mfa_pending,
        listing_version=found.listing_version,
        user_listing_version=found.user_listing_version,
        must_enrol=mfa.enrolment_owed(
            found.is_admin, found.second_factor, request.app[SETTINGS].require_2fa
        ),
        must_verify=(request.app[SETTINGS].require_email_verification and not found.email_verified),
    )


async def caller_from_grant(
    request: web.Request, grant: ConsoleGrant, ip: str, user_agent: str
) -> Caller | None:
    """The caller a console token stands for, read again now: its credential must still
    work (key not revoked or expired and allowed from ``ip``, session live, user enabled),
    and the token's scopes never exceed the credential's. None otherwise. Reads only: the
    session's idle clock is left alone (an open console is no sign of activity)."""
    reader = request.app[STATEMENT_READER]
    caller: Caller
    if grant.via == "api_key":
        holder = await api_keys.api_key_by_id(reader, grant.credential_id, ip=ip)
        if holder is None:
            return None
        caller = _key_caller(request, holder, ip, user_agent)
    else:
        idle = dt.timedelta(minutes=request.app[SETTINGS].session_idle_minutes)
        found = await session_by_id(reader, grant.credential_id, idle=idle)
        if found is None or not found.live:
            return None
        caller = _session_as_caller(request, found, ip, user_agent)
    if caller.user_id != grant.user_id:
        return None
    # The token is the socket's credential: a client key's token (issued on the client API's
    # websocket route) acts on the socket, never beyond the scopes it was issued with.
    return dataclasses.replace(caller, scopes=caller.scopes & grant.scopes, api="any")


# Cookie headers as aiohttp parsed them, by their text: a browser sends the same header on
# every request, and the parse (RFC 6265, a Morsel per cookie) was 4 % of a listed page's
# CPU. aiohttp's mapping is read-only. At most COOKIE_HEADERS_KEPT headers of up to
# COOKIE_HEADER_KEPT_LENGTH characters (all dropped when full): ~1 MB.
_PARSED_COOKIES: dict[str, Mapping[str, str]] = {}
COOKIE_HEADERS_KEPT: Final = 1024
COOKIE_HEADER_KEPT_LENGTH: Final = 1024


def _cookies(request: web.Request) -> Mapping[str, str]:
    header = request.headers.get(hdrs.COOKIE, "")
    parsed = _PARSED_COOKIES.get(header)
    if parsed is None:
        parsed = request.cookies
        if len(header) <= COOKIE_HEADER_KEPT_LENGTH:
            if len(_PARSED_COOKIES) >= COOKIE_HEADERS_KEPT:
                _PARSED_COOKIES.clear()
            _PARSED_COOKIES[header] = parsed
    return parsed


async def identify(
    request: web.Request, ip: str, *, touch: bool = True
) -> Caller | ApiError | None:
    """The caller, None for an anonymous request, or the error to answer with. Long-lived
    connections (the console WebSocket) ask again from time to time (``touch=False``: asking
    is no activity that keeps a session from its idle end): a revoked key, an ended session
    or a disabled user ends them.

    The read is one statement outside any transaction (``StatementReader``); the few writes
    (last use, an expired session, an audit row) each in a short transaction of their own,
    only when needed.
    """
    user_agent = request.headers.get("User-Agent", "")[:255]
    scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        return await _api_key_caller(request, credential.strip(), ip, user_agent)
    token = _cookies(request).get(cookie_name(request.app[SETTINGS].secure_cookies))
    if not token:
        return None
    return await _session_caller(request, token, ip, user_agent, touch=touch)


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    # Every line of the header, in order: a proxy may add a line of its own after the
    # client's rather than append to it (HAProxy), and the lines are one list.
    forwarded = request.headers.getall(hdrs.X_FORWARDED_FOR, ())
    ip = client_ip(
        request.remote,
        forwarded[0] if len(forwarded) == 1 else ",".join(forwarded) or None,
        settings.trusted_proxy_networks,
    )
    request[CLIENT_IP] = ip
    caller = await identify(request, ip)
    if isinstance(caller, ApiError):
        raise caller
    if caller is not None:
        request[CALLER] = caller
    return await handler(request)
