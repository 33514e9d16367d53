"""The panel's pages, declared like every API route (access, rate limit, permission node):
the route walks cover them. A page reads through the same services as its API twin.

Pages so far: sign-in (password, then the second factor — a TOTP code or a recovery code —
when one is enrolled; the configured OAuth providers) and the list of servers the caller may
see (searched by name on the server, with each server's latest CPU and memory use where the
caller holds ``stats.read``; static/servers.js refreshes them). Registration, password reset,
e-mail verification and the OAuth return page are in :mod:`control_plane.web.auth_pages`.
"""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web
from pydantic import BaseModel, Field

from control_plane.api.routing import Access, ApiRequest, ApiRoutes
from control_plane.keys import WALL_CLOCK
from control_plane.schemas.resource_use import SERVERS_PER_PAGE, ServerSearch
from control_plane.security import oauth
from control_plane.security.permissions import holds
from control_plane.services.servers import listing, resource_use
from control_plane.web.render import page

routes = ApiRoutes("pages")
PROVIDER_LABELS: Final = {"google": "Google", "github": "GitHub", "discord": "Discord"}


class SignInQuery(BaseModel):
    # Where to go after signing in: a path on this site only (see ``_local``).
    next: str = Field("/", max_length=2048)


def _local(target: str) -> str:
    """``target`` if it is a path on this site, else ``/`` (no open redirect to elsewhere)."""
    # A browser drops tabs and newlines anywhere in a URL ("/<TAB>/evil" is "//evil"):
    # a target with any control character is refused rather than cleaned.
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in target):
        return "/"
    if not target.startswith("/") or target.startswith(("//", "/\\")) or "\\" in target:
        return "/"
    return target


def providers(req: ApiRequest[Any, Any]) -> list[dict[str, str]]:
    """The OAuth providers configured here (only those), as the sign-in page offers them."""
    return [
        {"name": name, "label": PROVIDER_LABELS.get(name, name)}
        for name in oauth.configured_providers(req.settings)
    ]


@routes.get(
    "/login",
    summary="Page: sign in",
    access=Access.PUBLIC,
    query=SignInQuery,
    allow_mfa_pending=True,
)
async def sign_in_page(req: ApiRequest[Any, SignInQuery]) -> web.StreamResponse:
    target = _local(req.query.next)
    caller = req.caller
    if caller is not None and not caller.mfa_pending:
        raise web.HTTPSeeOther(target)
    return page(
        req.http,
        "login.html",
        next=target,
        second_factor=caller is not None and caller.mfa_pending,
        providers=providers(req),
        registration_open=req.settings.registration_mode == "open",
        mail_enabled=req.settings.mail_enabled,
    )


@routes.get(
    "/",
    summary="Page: my servers",
    query=ServerSearch,
    transactional=False,
)
async def server_list_page(req: ApiRequest[Any, ServerSearch]) -> web.StreamResponse:
    number = req.query.page
    search = req.query.q.strip()
    found = await listing.server_page(
        req.reader,
        req.me,
        offset=(number - 1) * SERVERS_PER_PAGE,
        limit=SERVERS_PER_PAGE,
        name=search or None,
    )
    # Shown at once (no flash of dashes); GET /api/v1/resource-use refreshes them.
    watched = [str(s.columns.id) for s in found.servers if holds(s.permissions, "stats.read")]
    use = await resource_use.latest(req.reader, watched, req.http.app[WALL_CLOCK]())
    pages = max(1, -(-found.total // SERVERS_PER_PAGE))
    return page(
        req.http,
        "servers.html",
        servers=found.servers,
        use=use,
        watched=frozenset(watched),
        total=found.total,
        search=search,
        page_number=number,
        pages=pages,
    )
