"""The one authorization decision: caller + the key's scopes + the permission node + the object.

Every transport asks :func:`refusal`: each HTTP route (the route table declares its
:class:`Requirement`), each message on the console WebSocket (its event table declares one
per event), and whatever transport comes next. Which servers a caller sees at all is decided
by :func:`control_plane.services.servers.access_for`, with the same rule for administrators:
only a credential with the ``admin`` scope acts as one (``Caller.acts_as_admin``).

A key never does more than its scopes say, whoever owns it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from control_plane.errors import (
    ApiError,
    Conflict,
    EnrolmentRequired,
    Forbidden,
    SecondFactorOwed,
    VerificationRequired,
)
from control_plane.security.api_keys import Scope
from control_plane.security.caller import Caller
from control_plane.security.permissions import ServerAccess

SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})


def scope_for(method: str) -> Scope:
    """The scope an HTTP method needs: safe methods look, the others act."""
    return Scope.READ if method in SAFE_METHODS else Scope.WRITE


@dataclass(frozen=True)
class Requirement:
    """What one action needs of its caller."""

    scope: Scope
    # Administration: the caller must act as an administrator.
    admin: bool = False
    # Account security (keys, second factors, linked accounts): a browser session only.
    session_only: bool = False
    # A permission node on the server the action is on (sub-users need it granted).
    permission: str | None = None
    # Open while a second factor is still owed at sign-in, or must still be enrolled.
    allow_mfa_pending: bool = False
    allow_enrolment: bool = False
    # Open to a user whose e-mail address must still be verified (``allow_enrolment`` is too).
    allow_unverified: bool = False
    # Which API the route belongs to: "native" (/api/v1), "application" or "client" (the
    # Pterodactyl-compatible ones); a ptla_/ptlc_ key works only on its own.
    api: str = "native"


def refusal(
    caller: Caller, need: Requirement, access: ServerAccess | None = None
) -> ApiError | None:
    """Why ``caller`` may not do what ``need`` describes (on the server ``access`` is for),
    or None when they may. The order decides which reason a caller with several is told."""
    if caller.mfa_pending and not need.allow_mfa_pending:
        return SecondFactorOwed("complete the second factor first")
    if caller.must_enrol and not need.allow_enrolment:
        return EnrolmentRequired("set up two-factor authentication first: it is required here")
    # Setting up a second factor needs no verified address: a caller who must do both
    # enrols first (the order above), so what enrols is open to them too.
    if caller.must_verify and not (need.allow_unverified or need.allow_enrolment):
        return VerificationRequired(
            "verify your e-mail address first: open the link we mailed you, or ask for a new "
            "one with POST /api/v1/account/email/verification"
        )
    if caller.api != "any" and caller.api != need.api:
        return Forbidden(f"this API key is for the {caller.api} API only")
    if need.session_only and caller.via != "session":
        return Forbidden("this is managed from a signed-in browser session, not with an API key")
    if need.scope not in caller.scopes:
        if caller.via == "session":  # only the metrics scope: sessions hold the others
            return Forbidden(
                f"this needs an API key with the {need.scope.value!r} scope, not a session"
            )
        return Forbidden(f"this API key lacks the {need.scope.value!r} scope")
    if need.admin and not caller.acts_as_admin:
        return Forbidden("administrators only")
    if access is None:
        return None
    if need.permission is not None and not access.allows(need.permission):
        return Forbidden(f"you lack the {need.permission!r} permission on this server")
    if access.suspended and access.role != "admin":
        return Conflict("this server is suspended; contact the administrators")
    return None
