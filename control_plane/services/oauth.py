"""Accounts linked to external providers, found by (provider, subject) only."""

from __future__ import annotations

import uuid
from typing import Final

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.models import OAuthIdentity, PasskeyCredential, User
from control_plane.errors import Conflict, NotFound
from control_plane.security.oauth import ExternalAccount


async def user_for(db: AsyncSession, provider: str, subject: str) -> User | None:
    """The enabled user linked to this provider account, if any (never matched by e-mail)."""
    user = await db.scalar(
        select(User)
        .join(OAuthIdentity, OAuthIdentity.user_id == User.id)
        .where(OAuthIdentity.provider == provider, OAuthIdentity.subject == subject)
    )
    return user if user is not None and not user.disabled else None


async def identities(db: AsyncSession, user_id: uuid.UUID) -> list[OAuthIdentity]:
    rows = await db.scalars(
        select(OAuthIdentity)
        .where(OAuthIdentity.user_id == user_id)
        .order_by(OAuthIdentity.created_at)
    )
    return list(rows)


async def link(
    db: AsyncSession, user_id: uuid.UUID, provider: str, account: ExternalAccount
) -> OAuthIdentity:
    """Link a provider account to the user; 409 if it belongs to someone, or one is linked."""
    owner = await db.scalar(
        select(OAuthIdentity.user_id).where(
            OAuthIdentity.provider == provider, OAuthIdentity.subject == account.subject
        )
    )
    if owner is not None:
        raise Conflict(f"this {provider} account is already linked to an account here")
    existing = await db.scalar(
        select(OAuthIdentity).where(
            OAuthIdentity.user_id == user_id, OAuthIdentity.provider == provider
        )
    )
    if existing is not None:
        raise Conflict(f"another {provider} account is linked already; unlink it first")
    identity = OAuthIdentity(
        user_id=user_id, provider=provider, subject=account.subject, email=account.email
    )
    db.add(identity)
    await db.flush()
    return identity


async def sign_in_methods(db: AsyncSession, user: User) -> int:
    """How many independent ways the user has to sign in (password, providers, passkeys).

    Every removal of one counts here first, so the count holds the user's row until the
    transaction ends: two removals at the same moment would otherwise each see the other's
    method left and together take the last. ``FOR NO KEY UPDATE`` waits for other removals
    and password changes, not for sign-ins (a new session's reference to the row only takes
    a key-share lock). On SQLite every writing transaction holds the database's lock from
    ``BEGIN`` already.
    """
    has_password = await db.scalar(
        select(User.password_hash.is_not(None))
        .where(User.id == user.id)
        .with_for_update(key_share=True)
    )
    if has_password is None:  # deleted while this request waited for the row
        raise NotFound("no such user")
    linked = await db.scalar(
        select(func.count()).select_from(OAuthIdentity).where(OAuthIdentity.user_id == user.id)
    )
    passkeys = await db.scalar(
        select(func.count())
        .select_from(PasskeyCredential)
        .where(PasskeyCredential.user_id == user.id)
    )
    return int(bool(has_password)) + int(linked or 0) + int(passkeys or 0)


LAST_WAY: Final = "this is your only way to sign in: set a password or link another first"


async def unlink(
    db: AsyncSession,
    user: User,
    *,
    provider: str | None = None,
    identity_id: uuid.UUID | None = None,
    last_way: str = LAST_WAY,
) -> OAuthIdentity:
    """Remove the user's link to ``provider`` (or the link ``identity_id``), unless it is
    their last way to sign in (409 ``last_way``). The link is found after the count's lock:
    the one meant, or none (404), never another linked meanwhile."""
    methods = await sign_in_methods(db, user)  # first: it locks the count
    found = select(OAuthIdentity).where(OAuthIdentity.user_id == user.id)
    if identity_id is not None:
        found = found.where(OAuthIdentity.id == identity_id)
    if provider is not None:
        found = found.where(OAuthIdentity.provider == provider)
    identity = await db.scalar(found)
    if identity is None:
        raise NotFound(f"no {provider} account is linked" if provider else "no such linked account")
    if methods <= 1:
        raise Conflict(last_way)
    await db.execute(delete(OAuthIdentity).where(OAuthIdentity.id == identity.id))
    return identity
