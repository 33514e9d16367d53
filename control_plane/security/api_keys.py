"""API keys: ``stl_<prefix>_<secret>``; the prefix finds the row, only a hash of the secret is kept.

The secret has 256 random bits, so a plain SHA-256 is enough (no bcrypt cost on every API
call) and keys survive a rotation of the auth secret.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import ipaddress
import re
import secrets
import uuid
from enum import StrEnum

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.models import ApiKey, User

KEY_PATTERN = re.compile(r"^stl_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
LAST_USED_INTERVAL = dt.timedelta(seconds=60)


class Scope(StrEnum):
    """``read``: safe methods only. ``write``: everything a user may do. ``admin``: admin routes."""

    READ = "read"
    WRITE = "write"
    ADMIN = "admin"


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_key() -> tuple[str, str, str]:
    """Return (full key shown once, prefix, secret hash)."""
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    return f"stl_{prefix}_{secret}", prefix, _hash(secret)


def ip_allowed(allowed: list[str], ip: str) -> bool:
    if not allowed:
        return True
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(net, strict=False) for net in allowed)


async def resolve_api_key(
    db: AsyncSession, presented: str, *, ip: str
) -> tuple[ApiKey, User, bool] | None:
    """The key, its enabled user and whether to record its use; reads only."""
    match = KEY_PATTERN.fullmatch(presented)
    if match is None:
        return None
    row = (
        await db.execute(
            select(ApiKey, User)
            .join(User, User.id == ApiKey.user_id)
            .where(ApiKey.prefix == match[1])
        )
    ).first()
    if row is None:
        return None
    key, user = row[0], row[1]
    now = dt.datetime.now(dt.UTC)
    if not hmac.compare_digest(key.secret_hash, _hash(match[2])):
        return None
    if user.disabled or (key.expires_at is not None and key.expires_at <= now):
        return None
    if not ip_allowed(key.allowed_ips, ip):
        return None
    record_use = key.last_used_at is None or now - key.last_used_at >= LAST_USED_INTERVAL
    return key, user, record_use


async def record_use(db: AsyncSession, key_id: uuid.UUID) -> None:
    await db.execute(
        update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=dt.datetime.now(dt.UTC))
    )
