"""Errors of the Pterodactyl-compatible API: ``{"errors": [{"code", "status", "detail"}]}``.

The one error middleware (``shared.http.error_shape_with``) asks :func:`render` for every
error; requests under ``/api/application`` and ``/api/client`` get Pterodactyl's shape and
status codes (invalid input is 422 ``ValidationException``, one entry per field with
``meta.source_field`` and ``meta.rule``), every other path our own shape.
"""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web

from control_plane.api.routing import api_of
from control_plane.errors import ApiError, InvalidRequest
from shared.errors import ErrorDetail
from shared.http import error_response


class DisplayError(ApiError):
    """Pterodactyl's ``DisplayException``: a 400 with a message for the user (no node or
    allocation can take a new server: billing modules read this 400 as "no room")."""

    status = 400
    code = "DisplayException"


class BadRequest(ApiError):
    """Pterodactyl's ``BadRequestHttpException``: a 400 for an action the server's state
    forbids now (a restore while it runs)."""

    status = 400
    code = "BadRequestHttpException"


# Our status → the exception name Pterodactyl puts in ``code``.
_CODES: Final = {
    400: "DisplayException",
    401: "AuthenticationException",
    403: "AccessDeniedHttpException",
    404: "NotFoundHttpException",
    405: "MethodNotAllowedHttpException",
    408: "HttpException",
    409: "ConflictHttpException",
    413: "HttpException",
    422: "ValidationException",
    429: "TooManyRequestsHttpException",
    502: "HttpException",
    503: "ServiceUnavailableHttpException",
}
# pydantic's error types → the name of the Laravel rule that says the same.
_RULES: Final = {
    "missing": "required",
    "string_too_short": "min",
    "string_too_long": "max",
    "too_short": "min",
    "too_long": "max",
    "greater_than_equal": "min",
    "greater_than": "min",
    "less_than_equal": "max",
    "less_than": "max",
    "int_parsing": "integer",
    "int_type": "integer",
    "int_from_float": "integer",
    "string_type": "string",
    "bool_parsing": "boolean",
    "bool_type": "boolean",
    "dict_type": "array",
    "list_type": "array",
    "string_pattern_mismatch": "regex",
    "extra_forbidden": "prohibited",
    "literal_error": "in",
    "enum": "in",
    "accepted": "accepted",
}


def _field(detail: ErrorDetail) -> str:
    names = [str(part) for part in detail.loc if part not in ("body", "query")]
    return ".".join(names)


def _validation(err: InvalidRequest) -> list[dict[str, Any]]:
    if not err.details:
        field_name = ""
        return [_entry(422, err.message, {"source_field": field_name, "rule": "invalid"})]
    return [
        _entry(
            422,
            f"{_field(d)}: {d.msg}" if _field(d) else d.msg,
            {"source_field": _field(d), "rule": _RULES.get(d.type, d.type)},
        )
        for d in err.details
    ]


def _entry(status: int, detail: str, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "code": _CODES.get(status, "HttpException"),
        "status": str(status),
        "detail": detail,
    }
    if meta is not None:
        entry["meta"] = meta
    return entry


def compat_error(err: ApiError) -> web.Response:
    """``err`` in Pterodactyl's shape, with its status and headers."""
    if isinstance(err, InvalidRequest):
        return web.json_response({"errors": _validation(err)}, status=422, headers=err.headers)
    entry = _entry(err.status, err.message)
    if isinstance(err, DisplayError | BadRequest):
        entry["code"] = err.code
    return web.json_response({"errors": [entry]}, status=err.status, headers=err.headers)


def render(request: web.Request, err: ApiError) -> web.StreamResponse:
    """The error answer for ``request``: Pterodactyl's shape on its paths, else ours."""
    if api_of(request.path) == "native":
        return error_response(err)
    return compat_error(err)
