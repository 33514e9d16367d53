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

Each account it names carries when the browser signed in as it. Whatever takes an account
back by ending all its sessions (a password change or reset, an administrator ending them,
disabling the account: ``users.sessions_ended_at``) makes every browser that signed in
before a stranger to it again: a laptop stolen with its cookies no longer has an allowance
of its own once its owner changed the password.
"""

from __future__ import annotations

import datetime as dt
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
    """A browser that signed in before: its own id, the accounts (user ids) it signed in as,
    and when it last did as each (Unix ms)."""

    id: str
    accounts: tuple[str, ...]
    signed_in_ms: tuple[int, ...] = ()

    def knows(self, user_id: object, *, since: dt.datetime | None = None) -> bool:
        """Whether the browser signed in as ``user_id``, and did so at ``since`` or later
        (when all the account's sessions were last ended)."""
        try:
            index = self.accounts.index(str(user_id))
        except ValueError:
            return False
        return since is None or self.signed_in_ms[index] >= _ms(since.timestamp())


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


def _entry(account: str, signed_in_ms: int) -> str:
    return f"{account}/{signed_in_ms}"


def cookie_name(secure: bool) -> str:
    return SECURE_COOKIE if secure else COOKIE


def _key(secret: str) -> bytes:
    # Its own key: a device cookie is no session, link or console token.
    return hmac.new(secret.encode(), b"stellarstack device v1", hashlib.sha256).digest()


def issue(
    secret: str,
    accounts: Sequence[str],
    *,
    device_id: str | None = None,
    now: float | None = None,
    signed_in_ms: Sequence[int] = (),
) -> str:
    """A cookie value recognising this browser for ``accounts`` (the most recent first),
    signed in as each at ``signed_in_ms`` (by default: now)."""
    moment = time.time() if now is None else now
    times = [*signed_in_ms, *([_ms(moment)] * (len(accounts) - len(signed_in_ms)))]
    kept: dict[str, int] = {}
    for account, signed_in in zip(accounts, times, strict=True):
        kept.setdefault(account, signed_in)  # an account's first (most recent) entry
    claims = {
        "iss": _ISSUER,
        "aud": _AUDIENCE,
        "iat": int(moment),
        "exp": int(moment) + LIFETIME_SECONDS,
        "jti": device_id or secrets.token_urlsafe(16),
        "acc": [_entry(account, signed_in) for account, signed_in in kept.items()][:MAX_ACCOUNTS],
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
    device_id, entries, issued = claims["jti"], claims["acc"], claims["iat"]
    if not isinstance(device_id, str) or not 8 <= len(device_id) <= 64:
        return None
    if not isinstance(entries, list) or not all(isinstance(a, str) for a in entries):
        return None
    if not isinstance(issued, int):
        return None
    accounts, times = [], []
    for entry in entries[:MAX_ACCOUNTS]:
        # "<user id>/<ms>"; a cookie from before the times were kept: its issue time.
        account, _, signed_in = entry.partition("/")
        if signed_in and not (signed_in.isascii() and signed_in.isdigit()):
            return None
        accounts.append(account)
        times.append(int(signed_in) if signed_in else issued * 1000)
    return Device(device_id, tuple(accounts), tuple(times))


def recognised(secret: str, token: object, user_id: str, *, now: float | None = None) -> str:
    """The cookie value to set after ``user_id`` signed in with the browser that sent ``token``
    (the other accounts it names keep when it signed in as them)."""
    device = read(secret, token)
    if device is None:
        return issue(secret, [user_id], now=now)
    moment = time.time() if now is None else now
    return issue(
        secret,
        [user_id, *device.accounts],
        device_id=device.id,
        now=moment,
        signed_in_ms=[_ms(moment), *device.signed_in_ms],
    )


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
