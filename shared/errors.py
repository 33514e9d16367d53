"""The one error shape of both HTTP APIs and the exception tree that produces it.

    ApiError                      (500 internal_error)
    ├── InvalidRequest            (400 invalid_request, field details)
    ├── Unauthenticated           (401 unauthenticated)
    ├── Forbidden                 (403 forbidden)
    ├── NotFound                  (404 not_found)
    ├── RequestTimeout            (408 request_timeout)
    ├── Conflict                  (409 conflict)
    ├── PayloadTooLarge           (413 payload_too_large)
    ├── RateLimited               (429 rate_limited)
    ├── InsufficientStorage       (507 insufficient_storage)
    └── UpstreamUnavailable       (503 node_unavailable)
        └── UpstreamFailed        (502 node_error)

Services raise these (or their own subclasses); one middleware turns them into
``{"error": {"code": ..., "message": ..., "details": [...]}}``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ValidationError


class ErrorDetail(BaseModel):
    """One problem with one field of the request (``loc`` is the path to it)."""

    loc: list[str | int]
    msg: str
    type: str


class ErrorBody(BaseModel):
    code: str
    message: str
    details: list[ErrorDetail] = []


class ErrorResponse(BaseModel):
    error: ErrorBody


class ApiError(Exception):
    """Root of the errors that reach a client; subclasses fix status and code."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        details: list[ErrorDetail] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return ErrorResponse(
            error=ErrorBody(code=self.code, message=self.message, details=self.details)
        ).model_dump()


class InvalidRequest(ApiError):
    status = 400
    code = "invalid_request"

    @classmethod
    def from_validation(
        cls, err: ValidationError, message: str = "invalid request"
    ) -> InvalidRequest:
        """Field-level details from a pydantic error, without echoing the input values."""
        details = [
            ErrorDetail(
                loc=[p for p in e["loc"] if isinstance(p, str | int)], msg=e["msg"], type=e["type"]
            )
            for e in err.errors(include_input=False, include_url=False)
        ]
        return cls(message, details=details)


class Unauthenticated(ApiError):
    status = 401
    code = "unauthenticated"


class Forbidden(ApiError):
    status = 403
    code = "forbidden"


class NotFound(ApiError):
    status = 404
    code = "not_found"


class MethodNotAllowed(ApiError):
    status = 405
    code = "method_not_allowed"


class RequestTimeout(ApiError):
    status = 408
    code = "request_timeout"


class Conflict(ApiError):
    status = 409
    code = "conflict"


class PayloadTooLarge(ApiError):
    status = 413
    code = "payload_too_large"


class RateLimited(ApiError):
    status = 429
    code = "rate_limited"


class InsufficientStorage(ApiError):
    """The server's disk has no room for what the request would write."""

    status = 507
    code = "insufficient_storage"


class UpstreamUnavailable(ApiError):
    """A node could not be reached or did not answer in time."""

    status = 503
    code = "node_unavailable"


class UpstreamNoAnswer(UpstreamUnavailable):
    """The request may have reached the node, whose answer never came (a timeout, a lost
    connection): it may have been done there. Not a refusal."""


class UpstreamFailed(UpstreamUnavailable):
    """A node answered, but not with something we can use."""

    status = 502
    code = "node_error"
