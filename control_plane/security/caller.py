"""Who is making a request, once authentication has run."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Literal

from control_plane.security.api_keys import Scope
from control_plane.services.audit import Actor


@dataclass(frozen=True)
class Caller:
    user_id: uuid.UUID
    email: str
    is_admin: bool
    via: Literal["session", "api_key"]
    scopes: frozenset[Scope]
    ip: str
    user_agent: str
    session_id: uuid.UUID | None = None
    api_key_id: uuid.UUID | None = None
    # Signed in with a password but a second factor is still owed: only enrolment is open.
    mfa_pending: bool = False
    # STELLAR_REQUIRE_2FA applies and no second factor is enrolled: only enrolment is open.
    must_enrol: bool = False
    # STELLAR_REQUIRE_EMAIL_VERIFICATION applies and the address is unproven: only
    # verification (and signing out) is open.
    must_verify: bool = False
    # The API a key works on: "any" (sessions, stl_ keys), "application" (ptla_) or
    # "client" (ptlc_).
    api: str = "any"
    # The lists' versions that the authentication read saw, in the same snapshot as the
    # credential: the administrators' and the user's (None: unknown, nothing cached is
    # answered; see db/models/listing.py, api/list_cache.py).
    listing_version: int | None = None
    user_listing_version: int | None = None

    @property
    def acts_as_admin(self) -> bool:
        """An administrator whose credential carries the ``admin`` scope. An administrator's
        API key without it is a user's key: it reaches only what any user would."""
        return self.is_admin and Scope.ADMIN in self.scopes

    @property
    def lists_version(self) -> int | None:
        """The version of the lists this caller is shown: everyone's for an administrator
        acting as one, else the user's own."""
        return self.listing_version if self.acts_as_admin else self.user_listing_version

    @property
    def actor(self) -> Actor:
        return Actor(self.user_id, self.email, self.ip, self.user_agent)


def anonymous_actor(ip: str, user_agent: str) -> Actor:
    return Actor(None, None, ip, user_agent)
