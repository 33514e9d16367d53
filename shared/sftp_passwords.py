"""Per-server SFTP passwords (docs/sftp.md "Passwords"): made by the control plane, shown
once, pushed to the node only as this salted scrypt hash, which the agent checks.

The password is random and opens nothing but SFTP on one server, so a compromised node that
reads the hashes (or the passwords typed at it) learns nothing that works elsewhere.
Format: ``scrypt$<n>$<r>$<p>$<salt b64>$<hash b64>``.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import os
import secrets
from typing import Final

N: Final = 1 << 14
R: Final = 8
P: Final = 1
SALT_BYTES: Final = 16
HASH_BYTES: Final = 32
PASSWORD_BYTES: Final = 18  # 24 base64url characters, 144 bits
MAX_PASSWORD_LENGTH: Final = 256
# scrypt's memory is 128 * n * r bytes (16 MiB here): the agent runs at most a few at once.
_MAX_N: Final = 1 << 16


def new_password() -> str:
    return secrets.token_urlsafe(PASSWORD_BYTES)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def hash_password(password: str) -> str:
    """The stored form of ``password`` (blocking: ~50 ms; run it in a thread)."""
    salt = os.urandom(SALT_BYTES)
    digest = hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=N, r=R, p=P, maxmem=256 * N * R, dklen=HASH_BYTES
    )
    return f"scrypt${N}${R}${P}${_b64(salt)}${_b64(digest)}"


def check_hash_format(encoded: str) -> str:
    """``encoded`` if it is a hash this module made (ValueError otherwise)."""
    _parse(encoded)
    return encoded


def _parse(encoded: str) -> tuple[int, int, int, bytes, bytes]:
    fields = encoded.split("$")
    if len(fields) != 6 or fields[0] != "scrypt":
        raise ValueError("not an scrypt password hash")
    n, r, p = (int(value) for value in fields[1:4])
    if not (2 <= n <= _MAX_N and n & (n - 1) == 0 and 1 <= r <= 16 and 1 <= p <= 4):
        raise ValueError("scrypt parameters out of range")
    salt, digest = base64.b64decode(fields[4]), base64.b64decode(fields[5])
    if len(salt) < 8 or len(digest) != HASH_BYTES:
        raise ValueError("scrypt salt or hash of the wrong size")
    return n, r, p, salt, digest


# Checked instead when a login name has no password (or no grant at all): the answer takes
# the same scrypt either way, so its time does not tell which accounts have a password.
@functools.cache
def dummy_hash() -> str:
    """A valid hash (same parameters as real ones) of a random password nobody knows."""
    return hash_password(secrets.token_urlsafe(32))


def verify_password(password: str, encoded: str) -> bool:
    """Whether ``password`` matches ``encoded`` (blocking; constant-time comparison)."""
    if len(password) > MAX_PASSWORD_LENGTH:
        return False
    try:
        n, r, p, salt, digest = _parse(encoded)
    except ValueError:
        return False
    candidate = hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=256 * n * r, dklen=len(digest)
    )
    return hmac.compare_digest(candidate, digest)
