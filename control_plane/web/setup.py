"""What the app needs to serve the panel: its files and templates, its errors, its headers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Final
from urllib.parse import quote

from aiohttp import web

from control_plane.api.registry import PAGE_TABLES
from control_plane.errors import (
    ApiError,
    EnrolmentRequired,
    NotFound,
    SecondFactorOwed,
    Unauthenticated,
    VerificationRequired,
)
from control_plane.keys import STYLE_NONCE, WEB_ASSETS, WEB_TEMPLATES
from control_plane.web.assets import IMMUTABLE, STATIC_PREFIX, AssetIndex
from control_plane.web.render import make_environment, page
from shared.http import Handler

# Pages: no inline script or style, no eval, nothing from elsewhere, never framed.
PAGE_CSP: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'self'"
)


def page_csp(style_nonce: str | None) -> str:
    """The pages' policy; with ``style_nonce``, ``<style>`` elements carrying it are allowed
    too (a page whose vendored code creates them, see ``render.page``)."""
    if style_nonce is None:
        return PAGE_CSP
    return PAGE_CSP.replace("style-src 'self'", f"style-src 'self' 'nonce-{style_nonce}'", 1)


# The page routes' paths (their errors are pages; every other route's are JSON).
_PAGE_PATHS: Final = frozenset(
    endpoint.path for table in PAGE_TABLES for endpoint in table.endpoints
)


def is_page(request: web.Request) -> bool:
    """Whether the answer is a page: a page route's, or, for a path no route has, what a
    browser asks for (``Accept: text/html``)."""
    match = request.match_info
    if match.http_exception is None and match.route.resource is not None:
        return match.route.resource.canonical in _PAGE_PATHS
    return "text/html" in request.headers.get("Accept", "")


async def web_ctx(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: read the static files and the templates once."""
    assets = AssetIndex.from_package()
    app[WEB_ASSETS] = assets
    app[WEB_TEMPLATES] = make_environment(assets)
    yield


async def serve_asset(request: web.Request) -> web.Response:
    """``GET /static/{name}``: a file by its hashed name, cacheable for a year."""
    asset = request.app[WEB_ASSETS].find(request.match_info["name"])
    if asset is None:
        raise NotFound("no such file")
    headers = {"Vary": "Accept-Encoding"}
    if asset.gzipped is not None and _accepts_gzip(request):
        headers["Content-Encoding"] = "gzip"
        return web.Response(body=asset.gzipped, content_type=asset.content_type, headers=headers)
    return web.Response(body=asset.body, content_type=asset.content_type, headers=headers)


def _accepts_gzip(request: web.Request) -> bool:
    for item in request.headers.get("Accept-Encoding", "").split(","):
        coding, _, params = item.strip().partition(";")
        if coding.strip().lower() == "gzip":
            return params.replace(" ", "").lower() not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False


static_routes = [web.get(STATIC_PREFIX + "{name:.+}", serve_asset)]


# Where a caller who must still enrol a second factor is sent (account_pages.py).
TWO_FACTOR_PAGE: Final = "/account/two-factor"
# Where a caller whose e-mail address must still be verified is sent: it mails a new link.
PROFILE_PAGE: Final = "/account"


def sign_in_address(request: web.Request) -> str:
    return "/login?next=" + quote(request.path_qs, safe="/")


@web.middleware
async def page_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A page's error is a page: the sign-in page for a visitor who is not signed in, an
    error page otherwise (the API's errors stay JSON). A caller refused because they must
    still enrol a second factor is sent to the page that enrols one, one who still owes the
    second factor of a sign-in to the sign-in page (its second step), and one whose address
    must still be verified to their profile page (it mails a new link); each says why."""
    if not is_page(request):
        return await handler(request)
    try:
        return await handler(request)
    except (Unauthenticated, SecondFactorOwed):
        # (A sign-in half done: the sign-in page shows its second step.)
        if request.method != "GET":
            raise
        raise web.HTTPSeeOther(sign_in_address(request)) from None
    except EnrolmentRequired:
        if request.method != "GET":
            raise
        raise web.HTTPSeeOther(TWO_FACTOR_PAGE) from None
    except VerificationRequired:
        if request.method != "GET":
            raise
        raise web.HTTPSeeOther(PROFILE_PAGE) from None
    except ApiError as err:
        return _error_page(request, err)
    except web.HTTPNotFound:
        return _error_page(request, NotFound("no such page"))


def _error_page(request: web.Request, err: ApiError) -> web.Response:
    response = page(request, "error.html", status=err.status, error=err)
    response.headers.update(err.headers)
    return response


def page_headers(request: web.Request, response: web.StreamResponse) -> None:
    """After the API's headers (they apply to everything): pages get their own CSP, static
    files a year of caching (``install_response_headers``'s hook)."""
    if is_page(request) and response.content_type == "text/html":
        response.headers["Content-Security-Policy"] = page_csp(request.get(STYLE_NONCE))
    elif request.path.startswith(STATIC_PREFIX) and response.status == 200:
        response.headers["Cache-Control"] = IMMUTABLE
