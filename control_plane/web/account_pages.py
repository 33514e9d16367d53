"""The account pages, ``/account…``: profile and password, two-factor authentication,
passkeys, sessions, API keys, SSH keys and the caller's own activity.

Each page reads the caller's own rows (the same queries as its API twin, always filtered by
the caller's id) and renders them; every change is made by the browser code through the
JSON API (``static/account.js``), which decides on its own whether to allow it. The section
links shown are those whose page route would let this caller in (the same ``refusal``).
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from functools import cache
from typing import Any, Final

from aiohttp import web

from control_plane.api import auth
from control_plane.api.account_activity import own_activity
from control_plane.api.routing import ApiRequest, ApiRoutes, Endpoint
from control_plane.db.models import User
from control_plane.errors import Unauthenticated
from control_plane.keys import SECRET_BOX
from control_plane.schemas.common import PageQuery
from control_plane.security import sessions
from control_plane.security.api_keys import Scope
from control_plane.security.authorization import refusal
from control_plane.services import api_keys as api_key_service
from control_plane.services import mail_flows, mfa, sftp
from control_plane.services import passkeys as passkey_service
from control_plane.web.render import page

routes = ApiRoutes("pages")
ACTIVITY_PER_PAGE: Final = 50


class ActivityPageQuery(PageQuery):
    """``?page=N`` (fifty entries a page)."""


@cache
def time_zones() -> list[str]:
    """Every IANA zone name this machine knows, sorted (the time-zone field's suggestions)."""
    return sorted(zoneinfo.available_timezones())


def _sections(req: ApiRequest[Any, Any]) -> list[dict[str, str]]:
    """The account's sections this caller may open (a caller who must still enrol a second
    factor sees only the pages that enrol one)."""
    found: list[dict[str, str]] = []
    for endpoint, label in _SECTIONS:
        if refusal(req.me, endpoint.requirement, None) is None:
            found.append({"label": label, "href": endpoint.path})
    return found


async def _user(req: ApiRequest[Any, Any]) -> User:
    user = await req.db.get(User, req.me.user_id)
    if user is None:
        raise Unauthenticated("authentication required")
    return user


def _may(req: ApiRequest[Any, Any], table: ApiRoutes, name: str) -> bool:
    """Whether the caller may use the API route ``name`` of ``table`` (its own decision)."""
    endpoint = next(endpoint for endpoint in table.endpoints if endpoint.name == name)
    return refusal(req.me, endpoint.requirement, None) is None


def _show(req: ApiRequest[Any, Any], template: str, **context: Any) -> web.Response:
    return page(req.http, f"account/{template}", sections=_sections(req), **context)


@routes.get(
    "/account",
    summary="Page: my profile (e-mail address, time zone, password)",
    allow_unverified=True,
)
async def profile_page(req: ApiRequest[Any, Any]) -> web.StreamResponse:
    user = await _user(req)
    return _show(
        req,
        "profile.html",
        user=user,
        mail_enabled=req.settings.mail_enabled,
        zones=time_zones(),
        # An account made through a sign-in provider may have no password to change.
        has_password=user.password_hash is not None,
        may_change_password=_may(req, auth.routes, "change_password"),
        # Sent here from any other page (web/setup.py): say why.
        must_verify=req.me.must_verify,
        pending=await mail_flows.pending_address(req.db, user),
    )


@routes.get(
    "/account/two-factor",
    summary="Page: two-factor authentication (authenticator app, recovery codes)",
    allow_enrolment=True,
)
async def two_factor_page(req: ApiRequest[Any, Any]) -> web.StreamResponse:
    user = await _user(req)
    active = await mfa.active_credential(req.db, user.id)
    return _show(
        req,
        "two_factor.html",
        enabled=active is not None,
        recovery_codes_left=await mfa.remaining_recovery_codes(req.db, user.id) if active else 0,
        required=mfa.policy_applies(user.is_admin, req.settings.require_2fa),
        # Sent here from any other page (web/setup.py): say why.
        must_enrol=req.me.must_enrol,
        configured=req.http.app[SECRET_BOX].is_configured,
    )


@routes.get(
    "/account/passkeys",
    summary="Page: my passkeys (add, rename, remove)",
    allow_enrolment=True,
)
async def passkeys_page(req: ApiRequest[Any, Any]) -> web.StreamResponse:
    rows = await passkey_service.of_user(req.db, req.me.user_id)
    return _show(req, "passkeys.html", passkeys=rows)


@routes.get("/account/sessions", summary="Page: where I am signed in (revoke sessions)")
async def sessions_page(req: ApiRequest[Any, Any]) -> web.StreamResponse:
    idle = dt.timedelta(minutes=req.settings.session_idle_minutes)
    rows = await sessions.live_sessions(req.db, req.me.user_id, idle)
    signed_in = [row for row in rows if not row.mfa_pending]
    return _show(req, "sessions.html", sessions=signed_in, current=req.me.session_id)


@routes.get("/account/api-keys", summary="Page: my API keys (create, revoke)")
async def api_keys_page(req: ApiRequest[Any, Any]) -> web.StreamResponse:
    rows = await api_key_service.keys_of(req.db, req.me.user_id)
    # The scopes and kinds the API would accept from this caller (create_key's rule).
    admin = req.me.is_admin
    scopes = [Scope.READ, Scope.WRITE] + ([Scope.ADMIN, Scope.METRICS] if admin else [])
    kinds = ["stellar", "client"] + (["application"] if admin else [])
    return _show(req, "api_keys.html", keys=list(rows), scopes=scopes, kinds=kinds)


@routes.get("/account/ssh-keys", summary="Page: my SSH keys for SFTP (add, remove)")
async def ssh_keys_page(req: ApiRequest[Any, Any]) -> web.StreamResponse:
    user = await _user(req)
    rows = await sftp.keys_of(req.db, user.id)
    return _show(req, "ssh_keys.html", keys=rows, sftp_account=user.username)


@routes.get(
    "/account/activity",
    summary="Page: what I did (my own audit entries)",
    query=ActivityPageQuery,
)
async def activity_page(req: ApiRequest[Any, ActivityPageQuery]) -> web.StreamResponse:
    query = ActivityPageQuery(page=req.query.page, per_page=ACTIVITY_PER_PAGE)
    found = await own_activity(req.db, req.me.user_id, query)
    pages = max(1, -(-found.meta.total // ACTIVITY_PER_PAGE))
    return _show(req, "activity.html", entries=found.data, page_number=query.page, pages=pages)


def _endpoint(path: str) -> Endpoint:
    return next(endpoint for endpoint in routes.endpoints if endpoint.path == path)


_SECTIONS: Final = tuple(
    (_endpoint(path), label)
    for path, label in (
        ("/account", "Profile"),
        ("/account/two-factor", "Two-factor"),
        ("/account/passkeys", "Passkeys"),
        ("/account/sessions", "Sessions"),
        ("/account/api-keys", "API keys"),
        ("/account/ssh-keys", "SSH keys"),
        ("/account/activity", "Activity"),
    )
)
