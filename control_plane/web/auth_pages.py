"""The panel's pages around signing in: registration, password reset (asking for a link and
using it), e-mail verification (the link in the mail) and the page an OAuth provider sends
the browser back to. Sign-in itself is in :mod:`control_plane.web.pages`.

Each page is a shell: the browser code (static/auth.js) calls the JSON API, which decides.
A page that opens a mailed link only peeks at its token (nothing is used up by opening it,
so a mail scanner that follows links burns nothing) and says at once when it is dead.
"""

from __future__ import annotations

from typing import Any, Final, Literal

from aiohttp import web
from pydantic import BaseModel, Field

from control_plane.api.routing import Access, ApiRequest, ApiRoutes
from control_plane.db.models import MailToken
from control_plane.errors import InvalidRequest
from control_plane.mail import tokens
from control_plane.services import mail_flows
from control_plane.web.pages import SignInQuery, _local
from control_plane.web.render import page

routes = ApiRoutes("pages")


class LinkQuery(BaseModel):
    # Optional: a link cut short in a mail client is "invalid", said on the page.
    token: str = Field("", max_length=4096)


def _signed_in(req: ApiRequest[Any, Any]) -> bool:
    return req.caller is not None and not req.caller.mfa_pending


@routes.get(
    "/register",
    summary="Page: create an account (where registration is open)",
    access=Access.PUBLIC,
    query=SignInQuery,
)
async def register_page(req: ApiRequest[Any, SignInQuery]) -> web.StreamResponse:
    target = _local(req.query.next)
    if _signed_in(req):
        raise web.HTTPSeeOther(target)
    return page(
        req.http,
        "auth/register.html",
        mode=req.settings.registration_mode,
        mail_enabled=req.settings.mail_enabled,
        next=target,
    )


@routes.get(
    "/forgot-password",
    summary="Page: ask for a password-reset link",
    access=Access.PUBLIC,
)
async def forgot_password_page(req: ApiRequest[Any, Any]) -> web.StreamResponse:
    return page(req.http, "auth/forgot.html", mail_enabled=req.settings.mail_enabled)


_LINK_TEMPLATES: Final = {"reset": "auth/reset.html", "verify": "auth/verify.html"}


async def _live_link(
    req: ApiRequest[Any, LinkQuery], purpose: Literal["reset", "verify"]
) -> MailToken | web.Response:
    """The mailed link's token row (looked at, not used up), or its page saying why the
    link is dead."""
    try:
        return await tokens.peek(req.db, req.query.token, purpose)
    except InvalidRequest as err:
        return page(req.http, _LINK_TEMPLATES[purpose], status=err.status, problem=err.message)


@routes.get(
    mail_flows.RESET_PAGE,
    summary="Page: set a new password with a mailed reset link (checks it, uses nothing up)",
    access=Access.PUBLIC,
    query=LinkQuery,
    rate_limit="authentication",
)
async def reset_password_page(req: ApiRequest[Any, LinkQuery]) -> web.StreamResponse:
    row = await _live_link(req, "reset")
    if isinstance(row, web.Response):
        return row
    return page(
        req.http,
        "auth/reset.html",
        problem=None,
        token=req.query.token,
        expires_at=row.expires_at.isoformat(),
    )


@routes.get(
    mail_flows.VERIFY_PAGE,
    summary="Page: confirm an e-mail address with the mailed link (checks it, uses nothing up)",
    access=Access.PUBLIC,
    query=LinkQuery,
)
async def verify_email_page(req: ApiRequest[Any, LinkQuery]) -> web.StreamResponse:
    row = await _live_link(req, "verify")
    if isinstance(row, web.Response):
        return row
    return page(
        req.http,
        "auth/verify.html",
        problem=None,
        token=req.query.token,
        address=row.email,
        signed_in=_signed_in(req),
    )


@routes.get(
    "/oauth/callback",
    summary="Page: where an OAuth provider sends the browser back (it finishes the sign-in "
    "through the API)",
    access=Access.PUBLIC,
    transactional=False,
)
async def oauth_callback_page(req: ApiRequest[Any, Any]) -> web.StreamResponse:
    return page(req.http, "auth/oauth_callback.html")
