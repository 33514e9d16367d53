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


class EnrolmentRequired(Forbidden):
    """403: the administrators require a second factor this account has not enrolled yet
    (the panel's pages send such a caller to the two-factor page instead of an error)."""


class SecondFactorOwed(Forbidden):
    """403: the password was right and the second factor is still owed (the panel's pages
    send such a caller back to the sign-in page, which shows its second step)."""


class VerificationRequired(Forbidden):
    """403: the administrators require a verified e-mail address and this account's is not
    yet (the panel's pages send such a caller to their profile page, which says why)."""


__all__ = [
    "ApiError",
    "Conflict",
    "EnrolmentRequired",
    "Forbidden",
    "InvalidRequest",
    "NotFound",
    "PayloadTooLarge",
    "RateLimited",
    "RequestTimeout",
    "SecondFactorOwed",
    "Unauthenticated",
    "UpstreamFailed",
    "UpstreamUnavailable",
    "VerificationRequired",
]
