"""Sign-in, sessions and password changes."""

from __future__ import annotations

import datetime as dt
import uuid

from pydantic import Field

from control_plane.schemas.common import Input, Output
from control_plane.security.passwords import MAX_LENGTH, MIN_LENGTH


class LoginIn(Input):
    email: str = Field(min_length=1, max_length=254)
    password: str = Field(min_length=1, max_length=MAX_LENGTH)


class UserOut(Output):
    id: uuid.UUID
    email: str
    is_admin: bool
    disabled: bool
    timezone: str = "UTC"
    created_at: dt.datetime
    # When the address was proven by a mailed link (None: not yet).
    email_verified_at: dt.datetime | None = None


class SessionOut(Output):
    """The signed-in state; ``csrf_token`` goes into ``X-CSRF-Token`` on unsafe requests."""

    user: UserOut
    csrf_token: str | None
    expires_at: dt.datetime | None
    via: str
    # Signed in with a password but a second factor is still owed (see POST /auth/2fa).
    mfa_pending: bool = False
    # A second factor must be enrolled before anything but enrolment is allowed.
    must_enrol: bool = False
    # The e-mail address must be verified before anything but verification is allowed.
    must_verify: bool = False


class SessionInfo(Output):
    id: uuid.UUID
    created_at: dt.datetime
    last_seen_at: dt.datetime
    expires_at: dt.datetime
    ip: str
    user_agent: str
    # The password was right; a second factor is still owed (the session opens nothing yet).
    mfa_pending: bool
    current: bool


class SessionList(Output):
    data: list[SessionInfo]


class PasswordChangeIn(Input):
    current_password: str = Field(min_length=1, max_length=MAX_LENGTH)
    new_password: str = Field(min_length=MIN_LENGTH, max_length=MAX_LENGTH)


class RegisterIn(Input):
    email: str = Field(min_length=3, max_length=254)
    password: str = Field(min_length=MIN_LENGTH, max_length=MAX_LENGTH)


class MessageOut(Output):
    """A plain answer (the same whatever the request's outcome, where it says so)."""

    message: str


class EmailIn(Input):
    email: str = Field(min_length=3, max_length=254)


class PasswordResetIn(Input):
    token: str = Field(min_length=20, max_length=128)
    new_password: str = Field(min_length=MIN_LENGTH, max_length=MAX_LENGTH)


class TokenQuery(Input):
    token: str = Field(min_length=1, max_length=128)


class EmailChangeIn(Input):
    email: str = Field(min_length=3, max_length=254)
    current_password: str = Field(min_length=1, max_length=MAX_LENGTH)


class VerifiedOut(Output):
    email: str
    email_verified_at: dt.datetime


class ResetTokenOut(Output):
    """A reset link's token is valid: how to use it."""

    expires_at: dt.datetime
    how: str
