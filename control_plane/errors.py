"""Domain errors of the control plane; all are :class:`shared.errors.ApiError` subclasses."""

from shared.errors import (
    ApiError,
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    RequestTimeout,
    Unauthenticated,
    UpstreamFailed,
    UpstreamUnavailable,
)

__all__ = [
    "ApiError",
    "Conflict",
    "Forbidden",
    "InvalidRequest",
    "NotFound",
    "PayloadTooLarge",
    "RateLimited",
    "RequestTimeout",
    "Unauthenticated",
    "UpstreamFailed",
    "UpstreamUnavailable",
]
