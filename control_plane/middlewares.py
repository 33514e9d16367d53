"""Middlewares of the public API, in the order they wrap a request."""

from __future__ import annotations

from aiohttp import web

from control_plane.keys import SETTINGS
from shared.http import Handler

_HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "X-XSS-Protection": "1; mode=block",
    "Referrer-Policy": "strict-origin-when-cross-origin",
    "Permissions-Policy": (
        "accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), "
        "microphone=(), payment=(), usb=()"
    ),
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "Cache-Control": "no-store",
}


async def _add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.update(_HEADERS)
    if request.app[SETTINGS].is_production:
        response.headers["Strict-Transport-Security"] = "max-age=31536000; includeSubDomains"


def install_security_headers(app: web.Application) -> None:
    """Headers on every response, errors and streamed responses included."""
    app.on_response_prepare.append(_add_security_headers)


__all__ = ["Handler", "install_security_headers"]
