"""Authentication middleware: session cookie (with CSRF on unsafe methods) or API key.

Runs on every request before routing decides what a route needs: it only establishes who
the caller is. A wrong CSRF token on a cookie-authenticated unsafe request is refused here,
whatever the route, and audited.
"""

from __future__ import annotations

import datetime as dt

from aiohttp import web

from control_plane.db.session import transaction
from control_plane.errors import ApiError, Forbidden, Unauthenticated
from control_plane.keys import CALLER, CLIENT_IP, SESSIONS, SETTINGS
from control_plane.security.api_keys import Scope, resolve_api_key
from control_plane.security.caller import Caller, anonymous_actor
from control_plane.security.client_ip import client_ip
from control_plane.security.sessions import cookie_name, csrf_matches, resolve_session
from control_plane.services import audit
from shared.http import Handler

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "X-CSRF-Token"


async def _caller(request: web.Request, ip: str) -> Caller | ApiError | None:
    """The caller, None for an anonymous request, or the error to answer with.

    Errors are returned, not raised, so the audit row about them commits.
    """
    settings = request.app[SETTINGS]
    secret = settings.auth_secret or ""
    user_agent = request.headers.get("User-Agent", "")[:255]
    scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
    async with transaction(request.app[SESSIONS]) as db:
        if scheme.lower() == "bearer":
            found = await resolve_api_key(db, credential.strip(), ip=ip)
            if found is None:
                await audit.append(
                    db, anonymous_actor(ip, user_agent), audit.AuditEvent("auth.api_key.rejected")
                )
                return Unauthenticated("invalid, expired or revoked API key")
            key, user = found
            scopes = frozenset(Scope(s) for s in key.scopes if s in {m.value for m in Scope})
            if not user.is_admin:
                scopes -= {Scope.ADMIN}
            return Caller(
                user.id,
                user.email,
                user.is_admin,
                "api_key",
                scopes,
                ip,
                user_agent,
                api_key_id=key.id,
            )
        token = request.cookies.get(cookie_name(settings.secure_cookies))
        if not token:
            return None
        idle = dt.timedelta(minutes=settings.session_idle_minutes)
        resolved = await resolve_session(db, secret=secret, token=token, idle=idle)
        if resolved is None:
            return None
        session, user = resolved
        scopes = frozenset({Scope.READ, Scope.WRITE} | ({Scope.ADMIN} if user.is_admin else set()))
        caller = Caller(
            user.id,
            user.email,
            user.is_admin,
            "session",
            scopes,
            ip,
            user_agent,
            session_id=session.id,
            mfa_pending=session.mfa_pending,
        )
        if request.method not in SAFE_METHODS and not csrf_matches(
            secret, session.id, request.headers.get(CSRF_HEADER)
        ):
            await audit.append(
                db,
                caller.actor,
                audit.AuditEvent("auth.csrf.rejected", details={"path": request.path}),
            )
            return Forbidden(f"missing or wrong {CSRF_HEADER} header")
        return caller


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    ip = client_ip(
        request.remote, request.headers.get("X-Forwarded-For"), settings.trusted_proxy_networks
    )
    request[CLIENT_IP] = ip
    caller = await _caller(request, ip)
    if isinstance(caller, ApiError):
        raise caller
    if caller is not None:
        request[CALLER] = caller
    return await handler(request)
