"""Second factors: TOTP enrolment, recovery codes and the second step of a sign-in."""

from __future__ import annotations

import datetime as dt

from pydantic import Field, RootModel

from control_plane.schemas.auth import SessionOut
from control_plane.schemas.common import Input, Output
from control_plane.security.passwords import MAX_LENGTH

# A TOTP code (6 digits) or a recovery code (16 letters, optionally grouped with dashes).
Code = Field(min_length=6, max_length=32)


class TotpStatus(Output):
    enabled: bool
    # A secret was set up but not yet confirmed with a code.
    setup_pending: bool
    recovery_codes_left: int
    # The administrators require this account to enrol before it can do anything else.
    required: bool


class TotpSetupOut(Output):
    """Add the secret to an authenticator app: scan ``qr_code`` or open ``otpauth_uri``."""

    secret: str
    otpauth_uri: str
    qr_code: str = Field(description="an SVG image as a data: URI")


class TotpEnableIn(Input):
    code: str = Code
    password: str = Field(min_length=1, max_length=MAX_LENGTH)


class TotpConfirmIn(Input):
    """Password and a current code (or a recovery code) to change 2FA settings."""

    code: str = Code
    password: str = Field(min_length=1, max_length=MAX_LENGTH)


class RecoveryCodesOut(Output):
    """Shown once: store them somewhere safe; each works once."""

    recovery_codes: list[str]


class SecondFactorIn(Input):
    """The second step of a sign-in: a TOTP code or a recovery code."""

    code: str = Code


class MfaRequiredOut(Output):
    """The password was right; finish with ``POST /api/v1/auth/2fa`` from this browser."""

    mfa_required: bool = True
    methods: list[str]
    csrf_token: str
    expires_at: dt.datetime


class LoginOut(RootModel[SessionOut | MfaRequiredOut]):
    """A full session, or a pending one that still owes a second factor."""
