"""Pages from Jinja2 templates, autoescaped: every value a template prints is escaped
unless a template says otherwise (none does).

A template is given what to show: the signed-in caller, the session's CSRF token (for the
browser code's requests), the addresses of the static files, and the page's own data. It
decides nothing about access: a handler passes a control's data only if the caller may use it.
"""

from __future__ import annotations

import secrets
from typing import Any

import jinja2
from aiohttp import web

from control_plane.keys import CALLER, SETTINGS, STYLE_NONCE, WEB_TEMPLATES
from control_plane.security.sessions import csrf_token
from control_plane.web.assets import AssetIndex


def make_environment(assets: AssetIndex) -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("control_plane.web", "templates"),
        autoescape=True,  # every template is HTML
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.globals["asset"] = assets.url
    return environment


def page(
    request: web.Request,
    template: str,
    *,
    status: int = 200,
    style_nonce: bool = False,
    **context: Any,
) -> web.Response:
    """``template`` rendered for this request's caller.

    ``style_nonce``: the page's CSP also allows ``<style>`` elements that carry a nonce made
    for this response (given to the template as ``style_nonce``), for vendored code that
    creates them (xterm.js); inline styles stay refused everywhere else.
    """
    caller = request.get(CALLER)
    nonce = None
    if style_nonce:
        nonce = secrets.token_urlsafe(18)
        request[STYLE_NONCE] = nonce
    csrf = None
    if caller is not None and caller.session_id is not None:
        csrf = csrf_token(request.app[SETTINGS].auth_secret or "", caller.session_id)
    html = (
        request.app[WEB_TEMPLATES]
        .get_template(template)
        .render(me=caller, csrf=csrf, path=request.path, style_nonce=nonce, **context)
    )
    return web.Response(text=html, status=status, content_type="text/html")
