"""API keys: ``stl_<prefix>_<secret>``; the prefix finds the row, only a hash of the secret is kept.

Keys for the Pterodactyl-compatible API have that API's form, 48 characters: an identifier
of 16 (``ptla_`` for ``/api/application`` or ``ptlc_`` for ``/api/client``, then 11 random
characters) followed by a 32-character secret. They are the same rows with a ``kind``, the
same scopes and the same checks; each works only on its own API (``Requirement.api``).

The secret has 256 random bits, so a plain SHA-256 is enough (no bcrypt cost on every API
call) and keys survive a rotation of the auth secret.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import hmac
import ipaddress
import re
import secrets
import string
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from sqlalchemy import Row, Select, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.models import ApiKey, User
from control_plane.db.models.listing import listing_versions
from control_plane.db.reader import StatementReader
from control_plane.services.mfa import second_factor_enrolled

KEY_PATTERN = re.compile(r"^stl_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
PTERODACTYL_PATTERN = re.compile(r"^(ptl[ac]_[A-Za-z0-9]{11})([A-Za-z0-9]{32})$")
_ALPHABET = string.ascii_letters + string.digits
# A key's kind → its identifier's prefix, and the API it works on ("any": ours and both).
KIND_PREFIXES: Final = {"application": "ptla_", "client": "ptlc_"}
KIND_API: Final = {"stellar": "any", "application": "application", "client": "client"}
LAST_USED_INTERVAL = dt.timedelta(seconds=60)


class Scope(StrEnum):
    """What a key may do: ``read`` looks (safe methods, read-only console events); ``write``
    acts, and includes ``read``; ``admin`` extends either to administration (admin routes and
    other users' servers) and is kept only while the key's owner is an administrator;
    ``metrics`` reads ``/metrics`` (a scraper's key needs nothing else), also kept only while
    the owner is an administrator."""

    READ = "read"
    WRITE = "write"
    ADMIN = "admin"
    METRICS = "metrics"


_SCOPE_VALUES: Final = frozenset(scope.value for scope in Scope)
# Scopes a key keeps only while its owner is an administrator.
ADMIN_ONLY: Final = frozenset({Scope.ADMIN, Scope.METRICS})


def granted_scopes(stored: list[str], *, is_admin: bool) -> frozenset[Scope]:
    """The scopes a key acts with: ``write`` includes ``read``; ``admin`` and ``metrics``
    only for admins."""
    return _granted(tuple(stored), is_admin)


# Read on every request; a handful of distinct scope lists exist (enum look-ups cost more).
@functools.lru_cache(maxsize=256)
def _granted(stored: tuple[str, ...], is_admin: bool) -> frozenset[Scope]:
    scopes = {Scope(s) for s in stored if s in _SCOPE_VALUES}
    if Scope.WRITE in scopes:
        scopes.add(Scope.READ)
    if not is_admin:
        scopes -= ADMIN_ONLY
    return frozenset(scopes)


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _random(length: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def new_key(kind: str = "stellar") -> tuple[str, str, str]:
    """Return (full key shown once, prefix, secret hash) for a key of ``kind``."""
    if kind in KIND_PREFIXES:
        identifier = KIND_PREFIXES[kind] + _random(11)
        secret = _random(32)
        return identifier + secret, identifier, _hash(secret)
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


# Built once: the key, its user and the user's second factors in one statement; for a route
# that answers kept lists, with the lists' versions in the same snapshot (a kept list is
# answered only at its version; the others do not pay for reading them).
_KEY_READ: Final = select(
    ApiKey.id,
    ApiKey.secret_hash,
    ApiKey.scopes,
    ApiKey.allowed_ips,
    ApiKey.expires_at,
    ApiKey.last_used_at,
    ApiKey.kind,
    User.id.label("user_id"),
    User.email,
    User.is_admin,
    User.disabled,
    User.email_verified_at,
    second_factor_enrolled(User.id).label("second_factor"),
).join(User, User.id == ApiKey.user_id)
_KEY_LOOKUP: Final = _KEY_READ.where(ApiKey.prefix == bindparam("prefix"))
_KEY_LOOKUP_LISTING: Final = _KEY_LOOKUP.add_columns(*listing_versions(User.id))
_KEY_BY_ID: Final = _KEY_READ.where(ApiKey.id == bindparam("key_id"))


@dataclass(frozen=True)
class KeyHolder:
    """A valid API key and its enabled user, as one lookup read them."""

    key_id: uuid.UUID
    # The scopes the key acts with (see ``granted_scopes``).
    scopes: frozenset[Scope]
    user_id: uuid.UUID
    email: str
    is_admin: bool
    # Whether the user has enrolled a second factor (for STELLAR_REQUIRE_2FA).
    second_factor: bool
    # Whether the user's address was proven by a mailed link.
    email_verified: bool
    # Whether ``last_used_at`` is old enough to record this use.
    record_use: bool
    # The API the key works on: "any", "application" or "client" (see ``KIND_API``).
    api: str = "any"
    # The lists' versions in the snapshot that read the key (``models/listing.py``): the
    # administrators' and the user's (None unless the lookup was asked for them).
    listing_version: int | None = None
    user_listing_version: int | None = None


def _split(presented: str) -> tuple[str, str] | None:
    """(the prefix that finds the row, the secret) of a key in either form."""
    match = KEY_PATTERN.fullmatch(presented) or PTERODACTYL_PATTERN.fullmatch(presented)
    return None if match is None else (match[1], match[2])


async def resolve_api_key(
    reader: StatementReader, presented: str, *, ip: str, listing: bool = False
) -> KeyHolder | None:
    """The key and its enabled user, or None; reads only (one statement, every request).
    With ``listing``, the lists' versions too."""
    parts = _split(presented)
    if parts is None:
        return None
    prefix, secret = parts
    statement: Select[*tuple[Any, ...]] = _KEY_LOOKUP_LISTING if listing else _KEY_LOOKUP
    rows = await reader.one_row(statement, {"prefix": prefix})
    if not rows or not hmac.compare_digest(rows[0].secret_hash, _hash(secret)):
        return None
    return _holder(rows[0], ip, listing=listing)


async def api_key_by_id(reader: StatementReader, key_id: uuid.UUID, *, ip: str) -> KeyHolder | None:
    """The key with this id and its enabled user, if it still works from ``ip`` (a console
    token reads its key again this way); reads only."""
    rows = await reader.one_row(_KEY_BY_ID, {"key_id": key_id})
    return _holder(rows[0], ip) if rows else None


def _holder(key: Row[*tuple[Any, ...]], ip: str, *, listing: bool = False) -> KeyHolder | None:
    """The holder of a key row that is enabled, unexpired and allowed from ``ip``."""
    now = dt.datetime.now(dt.UTC)
    if key.disabled or (key.expires_at is not None and key.expires_at <= now):
        return None
    if not ip_allowed(key.allowed_ips, ip):
        return None
    return KeyHolder(
        key_id=key.id,
        scopes=granted_scopes(key.scopes, is_admin=key.is_admin),
        user_id=key.user_id,
        email=key.email,
        is_admin=key.is_admin,
        second_factor=key.second_factor,
        email_verified=key.email_verified_at is not None,
        record_use=key.last_used_at is None or now - key.last_used_at >= LAST_USED_INTERVAL,
        api=KIND_API.get(key.kind, "none"),
        listing_version=key.listing_version if listing else None,
        user_listing_version=key.user_listing_version if listing else None,
    )


async def record_use(db: AsyncSession, key_id: uuid.UUID) -> None:
    await db.execute(
        update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=dt.datetime.now(dt.UTC))
    )
