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
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Any, TypeVar

import bcrypt

# bcrypt runs in threads of its own, at most one per core but one: a burst of sign-ins
# cannot take every core from the event loop (it releases the GIL, so it would).
_BCRYPT_THREADS = ThreadPoolExecutor(
    max_workers=max(1, (os.cpu_count() or 2) - 1), thread_name_prefix="bcrypt"
)

MIN_LENGTH = 12
MAX_LENGTH = 1024
_PREHASH_KEY = b"stellarstack/password/v1"
T = TypeVar("T")


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


async def _in_bcrypt_thread(func: Callable[..., T], *args: Any) -> T:
    return await asyncio.get_running_loop().run_in_executor(_BCRYPT_THREADS, func, *args)


async def hash_password(password: str, cost: int) -> str:
    """bcrypt hash of ``password`` at ``cost``, computed in a worker thread."""
    return await _in_bcrypt_thread(hash_password_sync, password, cost)


async def verify_password(password: str, hashed: str | None, cost: int) -> bool:
    """Check a password; with no hash (unknown user) do the same work against a dummy hash."""
    if hashed is None:
        dummy = await _in_bcrypt_thread(_dummy_hash, cost)
        await _in_bcrypt_thread(_check_sync, password, dummy)
        return False
    return await _in_bcrypt_thread(_check_sync, password, hashed)


def password_problem(password: str) -> str | None:
    """Why a new password is refused, or None."""
    if len(password) < MIN_LENGTH:
        return f"at least {MIN_LENGTH} characters"
    if len(password) > MAX_LENGTH:
        return f"at most {MAX_LENGTH} characters"
    return None
