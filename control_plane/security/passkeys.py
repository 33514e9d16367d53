"""WebAuthn (passkeys) through the ``webauthn`` package: options, registration, assertions.

Passkeys are registered as discoverable credentials with user verification required, so one
assertion proves possession of the authenticator *and* its PIN or biometric: a complete,
multi-factor sign-in. A signature counter that fails to grow (for an authenticator that
counts) suggests a cloned authenticator and is reported as :class:`CounterRegression`.

    PasskeyError            (root; the message is safe to show)
    └── CounterRegression   the assertion's counter is not above the stored one
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import webauthn
from webauthn.helpers import bytes_to_base64url
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

TIMEOUT_MS = 300_000


class PasskeyError(Exception):
    """The browser's answer is malformed, for another site, or fails verification."""


class CounterRegression(PasskeyError):
    """The signature counter went backwards or stood still: possibly a cloned authenticator."""


@dataclass(frozen=True)
class RelyingParty:
    id: str
    name: str
    origin: str


@dataclass(frozen=True)
class Challenge:
    """Options to hand to ``navigator.credentials`` and the challenge to remember."""

    options: dict[str, Any]
    challenge: bytes


@dataclass(frozen=True)
class RegisteredPasskey:
    credential_id: str
    public_key: bytes
    sign_count: int
    transports: list[str]


def registration_options(
    rp: RelyingParty, *, user_handle: bytes, user_name: str, existing: list[str]
) -> Challenge:
    """Options to create a discoverable, user-verified credential (not one already there)."""
    options = webauthn.generate_registration_options(
        rp_id=rp.id,
        rp_name=rp.name,
        user_id=user_handle,
        user_name=user_name,
        timeout=TIMEOUT_MS,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.REQUIRED,
            user_verification=UserVerificationRequirement.REQUIRED,
        ),
        exclude_credentials=[
            PublicKeyCredentialDescriptor(id=webauthn.base64url_to_bytes(c)) for c in existing
        ],
    )
    return Challenge(json.loads(webauthn.options_to_json(options)), options.challenge)


def verify_registration(
    rp: RelyingParty, credential: dict[str, Any], challenge: bytes
) -> RegisteredPasskey:
    """The new passkey, if the attestation answers our challenge for our origin and RP id."""
    try:
        verified = webauthn.verify_registration_response(
            credential=credential,
            expected_challenge=challenge,
            expected_rp_id=rp.id,
            expected_origin=rp.origin,
            require_user_verification=True,
        )
    except (WebAuthnException, ValueError, KeyError, TypeError) as err:
        raise PasskeyError(f"the passkey could not be registered: {err}") from err
    transports = credential.get("response", {}).get("transports", [])
    return RegisteredPasskey(
        bytes_to_base64url(verified.credential_id),
        verified.credential_public_key,
        verified.sign_count,
        [t for t in transports if isinstance(t, str)][:8] if isinstance(transports, list) else [],
    )


def authentication_options(rp: RelyingParty) -> Challenge:
    """Options for a discoverable sign-in: no user named, the authenticator offers its own."""
    options = webauthn.generate_authentication_options(
        rp_id=rp.id,
        timeout=TIMEOUT_MS,
        user_verification=UserVerificationRequirement.REQUIRED,
    )
    return Challenge(json.loads(webauthn.options_to_json(options)), options.challenge)


def credential_id_of(credential: dict[str, Any]) -> str:
    """The credential id an assertion names (base64url), or PasskeyError."""
    raw = credential.get("rawId") or credential.get("id")
    if not isinstance(raw, str) or not 1 <= len(raw) <= 1400:
        raise PasskeyError("the answer names no credential")
    return raw


def user_handle_of(credential: dict[str, Any]) -> bytes | None:
    handle = credential.get("response", {}).get("userHandle")
    try:
        return webauthn.base64url_to_bytes(handle) if isinstance(handle, str) else None
    except ValueError:
        return None


def verify_assertion(
    rp: RelyingParty,
    credential: dict[str, Any],
    challenge: bytes,
    *,
    public_key: bytes,
    sign_count: int,
) -> int:
    """The assertion's new signature counter, if it is valid; else PasskeyError.

    The signature is checked first and the counter after, so only a genuinely signed
    assertion is ever reported as a counter regression (a clone, not a forgery).
    """
    try:
        verified = webauthn.verify_authentication_response(
            credential=credential,
            expected_challenge=challenge,
            expected_rp_id=rp.id,
            expected_origin=rp.origin,
            credential_public_key=public_key,
            credential_current_sign_count=0,
            require_user_verification=True,
        )
    except (WebAuthnException, ValueError, KeyError, TypeError) as err:
        raise PasskeyError(f"the passkey answer is invalid: {err}") from err
    reported = int(verified.new_sign_count)
    # Authenticators that do not count always report 0 (allowed by WebAuthn §6.1.1).
    if (reported > 0 or sign_count > 0) and reported <= sign_count:
        raise CounterRegression(f"signature counter {reported} is not above {sign_count}")
    return reported
