"""Middlewares of the public API, in the order they wrap a request."""

from __future__ import annotations

import time

import structlog
from aiohttp import web
from sqlalchemy.engine import make_url

from control_plane.api.strict_input import unstorable
from control_plane.db import faults
from control_plane.errors import ApiError, Conflict, InvalidRequest
from control_plane.keys import RATE_DECISION, SETTINGS
from control_plane.settings import ControlPlaneSettings
from shared.errors import ErrorDetail
from shared.http import Handler

log = structlog.get_logger("control_plane")
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


def security_headers(settings: ControlPlaneSettings) -> dict[str, str]:
    """The guide's headers; HSTS only in production (served over TLS)."""
    headers = dict(_HEADERS)
    if settings.is_production:
        headers["Strict-Transport-Security"] = "max-age=31536000; includeSubDomains"
    return headers


def rate_limit_headers(request: web.Request, response: web.StreamResponse) -> None:
    """The rate-limit headers of the request's bucket (``install_response_headers``'s hook)."""
    decision = request.get(RATE_DECISION)
    if decision is not None:
        response.headers.update(decision.headers(time.time()))


@web.middleware
async def refuse_unstorable_text(request: web.Request, handler: Handler) -> web.StreamResponse:
    """400 for what no database could store, before anything reads it: a NUL in the path or
    the query (``%00``), or header bytes that are not UTF-8 (they become unpaired surrogates).

    Bodies get the same check when a route parses them (``strict_input``).
    """
    for _name, raw in request.raw_headers:
        if not raw.isascii():
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise InvalidRequest("a header value is not valid UTF-8") from err
    if unstorable(request.path):
        raise InvalidRequest("the path must not contain NUL")
    for key, value in request.query.items():
        if unstorable(key) or unstorable(value):
            detail = ErrorDetail(
                loc=["query"] if unstorable(key) else ["query", key],
                msg="must not contain NUL",
                type="value_error",
            )
            raise InvalidRequest("invalid query", details=[detail])
    return await handler(request)


_CORS_METHODS = "GET, POST, PUT, PATCH, DELETE"
_CORS_HEADERS = "Content-Type, X-CSRF-Token, Authorization"


@web.middleware
async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """CORS only for the configured origins; off (no headers at all) by default."""
    origin = request.headers.get("Origin", "").rstrip("/")
    allowed = request.app[SETTINGS].cors_origin_set
    if not allowed or origin not in allowed:
        return await handler(request)
    if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
        response: web.StreamResponse = web.Response(status=204)
        response.headers["Access-Control-Allow-Methods"] = _CORS_METHODS
        response.headers["Access-Control-Allow-Headers"] = _CORS_HEADERS
        response.headers["Access-Control-Max-Age"] = "600"
    else:
        response = await handler(request)
    response.headers["Access-Control-Allow-Origin"] = origin
    response.headers["Access-Control-Allow-Credentials"] = "true"
    response.headers["Vary"] = "Origin"
    return response


@web.middleware
async def database_faults(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A database that is down, busy or full answers 503 or 507 (``control_plane.db.faults``),
    logged in one line without a traceback; a row changed under the request answers 409,
    logged with its traceback; anything else goes on up as it was."""
    try:
        return await handler(request)
    except ApiError:
        raise
    except Exception as err:
        answer = faults.as_api_error(err)
        if answer is None:
            raise
        if isinstance(answer, Conflict):
            # A row changed under the request: on PostgreSQL a race, on SQLite (whose writers
            # take turns) a bug of ours; either way worth its traceback.
            log.warning(
                "database conflict", status=answer.status, answer=answer.message, exc_info=True
            )
            raise answer from err
        log.warning(
            "database fault",
            status=answer.status,
            answer=answer.message,
            error=f"{type(err).__name__}: {err}"[:300],
            database=_database_name(request.app[SETTINGS]),
        )
        raise answer from err


def _database_name(settings: ControlPlaneSettings) -> str:
    """Which database, for the log line (a file path for SQLite; no password)."""
    url = make_url(settings.database_url or "")
    return url.database or "" if url.get_backend_name() == "sqlite" else url.render_as_string()


__all__ = [
    "Handler",
    "cors",
    "database_faults",
    "rate_limit_headers",
    "refuse_unstorable_text",
    "security_headers",
]
