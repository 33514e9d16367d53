"""The page an invitation's mailed link opens, ``/invitation?token=…`` (docs/panel-invitations.md).

Like the other mailed-link pages it only peeks at the token (opening it uses nothing up) and
says at once when the invitation is dead. It shows what is offered — the server, who invited,
the permissions in words — and, by who is looking:

- signed out: a form that creates the account of the invited address (the link proves the
  mailbox; ``POST /api/v1/invitations/accept``), and links to sign in or register that come
  back here;
- signed in with the invited address: *Accept* (``POST /api/v1/invitations/join``);
- signed in with another address: a refusal, and no button.

The browser code (static/invitation.js) calls the JSON API, which decides again.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from aiohttp import web

from control_plane.api.routing import Access, ApiRequest, ApiRoutes
from control_plane.db.models import User
from control_plane.errors import ApiError, Forbidden
from control_plane.security.permissions import AREAS, DESCRIPTIONS, expand
from control_plane.services import subusers
from control_plane.services.users import normalise_email
from control_plane.web.auth_pages import LinkQuery
from control_plane.web.render import page

routes = ApiRoutes("pages")
TEMPLATE = "auth/invitation.html"


def permissions_in_words(granted: list[str]) -> list[dict[str, Any]]:
    """What ``granted`` allows, by area in the sub-users page's order, in words."""
    held = expand(granted)
    found: list[dict[str, Any]] = []
    for area, label in AREAS.items():
        nodes = sorted(p for p in held if p.startswith(area + "."))
        if nodes:
            found.append({"label": label, "items": [DESCRIPTIONS[p] for p in nodes]})
    return found


def _dead(req: ApiRequest[Any, Any], err: ApiError) -> web.Response:
    return page(req.http, TEMPLATE, status=err.status, problem=err.message, offer=None)


@routes.get(
    subusers.INVITATION_PAGE,
    summary="Page: an invitation to a server (the mailed link; checks it, uses nothing up)",
    access=Access.PUBLIC,
    query=LinkQuery,
    rate_limit="authentication",
)
async def invitation_page(req: ApiRequest[Any, LinkQuery]) -> web.StreamResponse:
    try:
        invitation, server = await subusers.pending_invitation(req.db, req.query.token)
    except ApiError as err:
        return _dead(req, err)
    inviter = await req.db.get(User, invitation.invited_by) if invitation.invited_by else None
    me = None
    if req.caller is not None and not req.caller.mfa_pending:
        me = await req.db.get(User, req.caller.user_id)
    if me is not None and normalise_email(me.email) != invitation.email:
        refused = Forbidden(
            f"{subusers.OTHER_ADDRESS}: you are signed in as {me.email}; sign out, then open "
            "the link again"
        )
        return _dead(req, refused)
    here = f"{subusers.INVITATION_PAGE}?token={quote(req.query.token, safe='')}"
    return page(
        req.http,
        TEMPLATE,
        problem=None,
        offer={
            "server_name": server.name,
            "inviter": inviter.email if inviter is not None else None,
            "email": invitation.email,
            "areas": permissions_in_words(list(invitation.permissions)),
            "expires_at": invitation.expires_at.isoformat(),
        },
        token=req.query.token,
        signed_in=me is not None,
        may_create=req.settings.registration_mode != "closed",
        registration_open=req.settings.registration_mode == "open",
        here=quote(here, safe=""),
    )
