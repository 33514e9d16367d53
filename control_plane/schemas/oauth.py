"""Sign-in with Google, GitHub or Discord, and linking those accounts."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Literal

from pydantic import Field, RootModel

from control_plane.schemas.auth import SessionOut
from control_plane.schemas.common import Input, Output
from control_plane.schemas.mfa import MfaRequiredOut

ProviderField = Literal["google", "github", "discord"]


class ProviderList(Output):
    """The providers this panel is configured for."""

    providers: list[str]


class OAuthStartIn(Input):
    provider: ProviderField


class OAuthStartOut(Output):
    """Send the browser here; the provider sends it back to the callback."""

    authorize_url: str


class OAuthCallbackQuery(Input):
    state: str = Field(min_length=1, max_length=256)
    code: str | None = Field(None, min_length=1, max_length=2048)
    # The provider's refusal (e.g. the user pressed "cancel").
    error: str | None = Field(None, max_length=256)
    error_description: str | None = Field(None, max_length=1024)
    # Providers may echo more (Google: scope, authuser, prompt, iss); none of it is trusted.
    scope: str | None = Field(None, max_length=1024)
    authuser: str | None = Field(None, max_length=16)
    prompt: str | None = Field(None, max_length=64)
    hd: str | None = Field(None, max_length=256)
    iss: str | None = Field(None, max_length=256)


class IdentityOut(Output):
    id: uuid.UUID
    provider: str
    email: str | None
    created_at: dt.datetime


class IdentityList(Output):
    data: list[IdentityOut]


class LinkedOut(Output):
    """A provider account was linked to the signed-in user."""

    linked: IdentityOut


class OAuthCallbackOut(RootModel[SessionOut | MfaRequiredOut | LinkedOut]):
    """A session, a pending session owing a second factor, or the account just linked."""


class UnlinkIn(Input):
    provider: ProviderField
