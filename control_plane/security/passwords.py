"""bcrypt password hashing, always off the event loop.

bcrypt reads at most 72 bytes, so every password is first reduced to a fixed 44-byte string:
base64 of HMAC-SHA256 under a constant, versioned key. Long passwords therefore count in full
(two 100-byte passwords differing only at the end hash differently), and no NUL byte reaches
bcrypt. The HMAC key is deliberately not a deployment secret: rotating secrets must never lock
users out of their accounts.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
from functools import lru_cache

import bcrypt

MIN_LENGTH = 12
MAX_LENGTH = 1024
_PREHASH_KEY = b"stellarstack/password/v1"


def _prehash(password: str) -> bytes:
    digest = hmac.new(_PREHASH_KEY, password.encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest)


def hash_password_sync(password: str, cost: int) -> str:
    return bcrypt.hashpw(_prehash(password), bcrypt.gensalt(rounds=cost)).decode("ascii")


def _check_sync(password: str, hashed: str) -> bool:
    try:
        return bcrypt.checkpw(_prehash(password), hashed.encode("ascii"))
    except ValueError:
        return False


@lru_cache(maxsize=4)
def _dummy_hash(cost: int) -> str:
    return hash_password_sync("no account has this password", cost)


async def hash_password(password: str, cost: int) -> str:
    """bcrypt hash of ``password`` at ``cost``, computed in a worker thread."""
    return await asyncio.to_thread(hash_password_sync, password, cost)


async def verify_password(password: str, hashed: str | None, cost: int) -> bool:
    """Check a password; with no hash (unknown user) do the same work against a dummy hash."""
    if hashed is None:
        await asyncio.to_thread(_check_sync, password, await asyncio.to_thread(_dummy_hash, cost))
        return False
    return await asyncio.to_thread(_check_sync, password, hashed)


def password_problem(password: str) -> str | None:
    """Why a new password is refused, or None."""
    if len(password) < MIN_LENGTH:
        return f"at least {MIN_LENGTH} characters"
    if len(password) > MAX_LENGTH:
        return f"at most {MAX_LENGTH} characters"
    return None
