"""Browsers that have signed in to an account: its owner's way in while its password is guessed.

Password sign-ins are limited per client address (the ``authentication`` preset), which a
guesser with many addresses spreads thin. So every account also has an allowance of password
sign-ins from browsers it has not signed in with (the ``sign_in_account`` preset, counted for
the e-mail address given, whether or not an account has it: the refusal says nothing about
which addresses have accounts). A guesser spends that allowance and its owner would be locked
out with them; so a browser that completed a sign-in carries a device cookie naming the
accounts it signed in as, and spends an allowance of its own instead (OWASP's "device
cookies"). Its owner gets in during an attack; a stolen cookie guesses no faster than a
stranger, and only against its own allowance.

The cookie opens nothing by itself: the password and the second factor are asked as always.
It is a token signed with HS256 under a key derived from ``STELLAR_AUTH_SECRET`` for this use
only (rotating the secret makes every browser a stranger again), pinned algorithm, audience
and issuer; ``jti`` names the browser's own allowance.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import jwt

COOKIE: Final = "stellar_device"
SECURE_COOKIE: Final = "__Host-stellar_device"
LIFETIME_SECONDS: Final = 365 * 24 * 3600
# Accounts one browser is recognised for (a family computer, an administrator's second account).
MAX_ACCOUNTS: Final = 8
# Allowances shared by the addresses that have no account (see account_subject).
UNKNOWN_SLOTS: Final = 4096
_ALGORITHM: Final = "HS256"
_AUDIENCE: Final = "stellarstack:device"
_ISSUER: Final = "stellarstack:control-plane"
_REQUIRED: Final = ["exp", "iat", "aud", "iss", "jti", "acc"]


@dataclass(frozen=True)
class Device:
    """A browser that signed in before: its own id and the accounts (user ids) it signed in as."""

    id: str
    accounts: tuple[str, ...]

    def knows(self, user_id: object) -> bool:
        return str(user_id) in self.accounts


def cookie_name(secure: bool) -> str:
    return SECURE_COOKIE if secure else COOKIE


def _key(secret: str) -> bytes:
    # Its own key: a device cookie is no session, link or console token.
    return hmac.new(secret.encode(), b"stellarstack device v1", hashlib.sha256).digest()


def issue(
    secret: str, accounts: Sequence[str], *, device_id: str | None = None, now: float | None = None
) -> str:
    """A cookie value recognising this browser for ``accounts`` (the most recent first)."""
    issued = int(time.time() if now is None else now)
    claims = {
        "iss": _ISSUER,
        "aud": _AUDIENCE,
        "iat": issued,
        "exp": issued + LIFETIME_SECONDS,
        "jti": device_id or secrets.token_urlsafe(16),
        "acc": list(dict.fromkeys(accounts))[:MAX_ACCOUNTS],
    }
    return jwt.encode(claims, _key(secret), algorithm=_ALGORITHM)


def read(secret: str, token: object) -> Device | None:
    """The browser a cookie value names; None for anything forged, expired or malformed."""
    if not isinstance(token, str) or not 16 <= len(token) <= 4096:
        return None
    try:
        claims = jwt.decode(
            token,
            _key(secret),
            algorithms=[_ALGORITHM],
            audience=_AUDIENCE,
            issuer=_ISSUER,
            options={"require": _REQUIRED},
        )
    except jwt.PyJWTError:
        return None
    device_id, accounts = claims["jti"], claims["acc"]
    if not isinstance(device_id, str) or not 8 <= len(device_id) <= 64:
        return None
    if not isinstance(accounts, list) or not all(isinstance(a, str) for a in accounts):
        return None
    return Device(device_id, tuple(accounts[:MAX_ACCOUNTS]))


def recognised(secret: str, token: object, user_id: str) -> str:
    """The cookie value to set after ``user_id`` signed in with the browser that sent ``token``."""
    device = read(secret, token)
    if device is None:
        return issue(secret, [user_id])
    return issue(secret, [user_id, *device.accounts], device_id=device.id)


def account_subject(email: str, *, has_account: bool) -> str:
    """The allowance an e-mail address names (hashed: the rate-limit store holds no
    addresses). An account's is its own; addresses without one share ``UNKNOWN_SLOTS``
    allowances by their hash — limited alike (the refusal names no account), yet a flood of
    invented addresses adds no more than that many buckets to the store."""
    digest = hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]
    if has_account:
        return f"account:{digest}"
    return f"no-account:{int(digest, 16) % UNKNOWN_SLOTS}"


def device_subject(device: Device) -> str:
    return f"device:{device.id}"
