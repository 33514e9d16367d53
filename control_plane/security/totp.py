"""TOTP (RFC 6238: HMAC-SHA-1, 6 digits, 30-second steps) and recovery codes.

Verification accepts the current step and one on either side (clock drift), and only a step
*later* than the last one accepted for the user, so a code can never be used twice — not even
a different code from an earlier step (RFC 6238 §5.2). Persisting that step is the caller's
job (:mod:`control_plane.services.mfa` does it with one conditional UPDATE).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

import pyotp
import segno

STEP_SECONDS = 30
DIGITS = 6
DRIFT_STEPS = 1
RECOVERY_CODE_COUNT = 10
_RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i
_RECOVERY_GROUPS = 4
_RECOVERY_GROUP_LENGTH = 4  # 16 characters of a 31-letter alphabet: about 79 bits
_CODE = re.compile(r"[0-9]{6,8}")


def generate_secret() -> str:
    """A new random base32 secret of 160 bits (the SHA-1 block-size recommendation)."""
    return pyotp.random_base32(length=32)


def step_at(unix_time: float) -> int:
    """The RFC 6238 time step a moment falls in."""
    return int(unix_time // STEP_SECONDS)


def code_at_step(secret: str, step: int, *, digits: int = DIGITS) -> str:
    """The code for ``step`` (HOTP of the step counter)."""
    return pyotp.HOTP(secret, digits=digits).at(step)


def matching_step(
    secret: str,
    code: str,
    *,
    unix_time: float,
    last_step: int | None,
    digits: int = DIGITS,
) -> int | None:
    """The time step ``code`` is valid for, within ±1 step and after ``last_step``; else None."""
    code = code.strip().replace(" ", "")
    if len(code) != digits or not _CODE.fullmatch(code):
        return None
    now = step_at(unix_time)
    found = None
    # Compare every candidate (no early exit), so timing says nothing about which one matched.
    for step in range(now - DRIFT_STEPS, now + DRIFT_STEPS + 1):
        if hmac.compare_digest(code_at_step(secret, step, digits=digits), code):
            found = step if found is None else found
    if found is None or (last_step is not None and found <= last_step):
        return None
    return found


@dataclass(frozen=True)
class Enrolment:
    """What a user needs to add the secret to an authenticator app."""

    secret: str
    uri: str
    qr_svg_data_uri: str


def enrolment(secret: str, *, account: str, issuer: str) -> Enrolment:
    """The otpauth:// URI for ``secret`` and a QR code of it as an SVG data URI."""
    uri = pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).provisioning_uri(
        name=account, issuer_name=issuer
    )
    qr = segno.make(uri, error="m", micro=False).svg_data_uri(scale=4)
    return Enrolment(secret, uri, qr)


def generate_recovery_codes(count: int = RECOVERY_CODE_COUNT) -> list[str]:
    """``count`` fresh codes like ``abcd-efgh-jkmn-pqrs``; shown once, stored hashed."""
    return [
        "-".join(
            "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(_RECOVERY_GROUP_LENGTH))
            for _ in range(_RECOVERY_GROUPS)
        )
        for _ in range(count)
    ]


def normalise_recovery_code(code: str) -> str:
    """Lower-case, without separators or spaces: how users may type a code back."""
    return "".join(c for c in code.lower() if c not in "- \t")


def recovery_code_hash(code: str) -> str:
    """SHA-256 of the normalised code (high-entropy codes need no slow hash)."""
    return hashlib.sha256(b"recovery:" + normalise_recovery_code(code).encode()).hexdigest()
