"""Passkeys: registration, management and sign-in (WebAuthn JSON as browsers produce it)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from pydantic import Field

from control_plane.schemas.common import Input, Output

Name = Field(min_length=1, max_length=64)


class WebAuthnOptionsOut(Output):
    """Pass ``options`` to ``navigator.credentials.create``/``get`` (as JSON options)."""

    options: dict[str, Any]


class PasskeyRegisterIn(Input):
    name: str = Name
    # The PublicKeyCredential as JSON (``credential.toJSON()``).
    credential: dict[str, Any]


class PasskeyRenameIn(Input):
    # Optional only so that someone else's passkey is 404 before the body is judged.
    name: str | None = Field(None, min_length=1, max_length=64)


class PasskeyOut(Output):
    id: uuid.UUID
    name: str
    created_at: dt.datetime
    last_used_at: dt.datetime | None


class PasskeyList(Output):
    data: list[PasskeyOut]


class PasskeySignInIn(Input):
    credential: dict[str, Any]
