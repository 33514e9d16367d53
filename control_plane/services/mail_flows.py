"""Flows that mail a link: e-mail verification (at registration and on a change of
address) and password reset. Mail is queued in the caller's transaction (the outbox)."""

from __future__ import annotations

import datetime as dt
import math
import uuid
from typing import Final

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.models import (
    ApiKey,
    MailToken,
    OAuthIdentity,
    OutboxMail,
    PasskeyCredential,
    SftpPassword,
    SshKey,
    User,
)
from control_plane.errors import Conflict, InvalidRequest, RateLimited
from control_plane.mail import tokens
from control_plane.mail.outbox import queue
from control_plane.mail.templates import render
from control_plane.security.sessions import end_all_sessions
from control_plane.services import mfa
from control_plane.services.auth import find_login
from control_plane.services.users import normalise_email
from control_plane.settings import ControlPlaneSettings

VERIFY_PATH: Final = "/api/v1/auth/email/verify"
RESET_PATH: Final = "/api/v1/auth/password-reset"
# What the mails link to: the panel's pages, which call the API routes above.
VERIFY_PAGE: Final = "/verify-email"
RESET_PAGE: Final = "/reset-password"
# Reset mails one account is sent at most: (count, window). Each request also retires the
# link mailed before, so without a bound anyone with enough client addresses floods the
# owner's mailbox and keeps every link dead before it can be used.
RESET_ALLOWANCE: Final = (5, dt.timedelta(hours=1))
# Verification links one address is mailed (registration, a resend, a change of address):
# (count, window) per address, whoever asks — the address is the asker's choice.
VERIFY_LINK_ALLOWANCE: Final = (3, dt.timedelta(hours=1))
NO_MAIL: Final = "this panel sends no e-mail (no SMTP server is configured); ask an administrator"


def link(settings: ControlPlaneSettings, path: str, token: str) -> str:
    return f"{settings.link_base}{path}?token={token}"


async def send_verification(
    db: AsyncSession, settings: ControlPlaneSettings, user: User, *, address: str | None = None
) -> bool:
    """Mail a verification link for ``user``'s address (or ``address``, a new one they asked
    for); False when this panel sends no mail."""
    if not settings.mail_enabled:
        return False
    address = address or user.email
    await within_allowance(
        db,
        kind="verify_email",
        to=address,
        allowance=VERIFY_LINK_ALLOWANCE,
        what="verification links",
    )
    token = await tokens.issue(db, user_id=user.id, purpose="verify", email=address)
    hours = int(tokens.LIFETIMES["verify"].total_seconds() // 3600)
    await queue(
        db,
        kind="verify_email",
        to=address,
        context={"email": address, "link": link(settings, VERIFY_PAGE, token), "hours": hours},
        base_url=settings.link_base,
    )
    return True


async def confirm_verification(db: AsyncSession, token: str) -> User:
    """Use a verification token: the address it was sent to is the user's, verified."""
    row = await tokens.use(db, token, "verify")
    user = await db.get(User, row.user_id)
    if user is None or user.disabled:
        raise InvalidRequest(tokens.INVALID)
    if row.email != user.email:
        taken = await db.scalar(select(User.id).where(User.email == row.email))
        if taken is not None:
            raise Conflict("that address belongs to another account now")
        user.email = row.email
        # Links sent to the old address must not act on the account any more.
        await _retire_tokens(db, user.id, "verify", "reset")
    user.email_verified_at = dt.datetime.now(dt.UTC)
    return user


async def request_email_change(
    db: AsyncSession, settings: ControlPlaneSettings, user: User, new_email: str
) -> bool:
    """Ask to move ``user`` to ``new_email``. With mail: a link to the new address (the
    change happens when it is opened) and a notice to the old one; True. Without: changed
    now, unverified; False."""
    address = normalise_email(new_email)
    if address == user.email:
        raise Conflict("that is your address already")
    if await db.scalar(select(User.id).where(User.email == address)) is not None:
        raise Conflict(f"a user with e-mail {address!r} exists already")
    if not settings.mail_enabled:
        user.email, user.email_verified_at = address, None
        await db.flush()
        return False
    await send_verification(db, settings, user, address=address)
    await queue(
        db,
        kind="email_changing",
        to=user.email,
        context={"email": user.email, "new_email": address},
        base_url=settings.link_base,
    )
    return True


async def pending_address(db: AsyncSession, user: User) -> MailToken | None:
    """The change of address ``user`` asked for and has not finished: the live verification
    link sent to another address than theirs (a new link replaces the last, so there is at
    most one), or None. A password change or signing out everywhere retires it."""
    row = await db.scalar(
        select(MailToken)
        .where(
            MailToken.user_id == user.id,
            MailToken.purpose == "verify",
            MailToken.used_at.is_(None),
        )
        .order_by(MailToken.created_at.desc())
        .limit(1)
    )
    if row is None or row.email == user.email or row.expires_at <= dt.datetime.now(dt.UTC):
        return None
    return row


async def request_password_reset(
    db: AsyncSession, settings: ControlPlaneSettings, email: str
) -> tuple[uuid.UUID, bool] | None:
    """Queue a reset link if ``email`` names an enabled account that has not used up its
    :data:`RESET_ALLOWANCE`; return the account's id and whether a link was queued, or None.

    Every path does the same work (the allowance counted, a token made and hashed, the mail
    rendered, the same UPDATE run) and the caller answers the same, so neither the answer nor
    its timing tells whether the address has an account, or one past its allowance. Past the
    allowance nothing is mailed and the last link mailed stays valid: counted in the database
    (every replica, any restart), under a lock on the account's row so that requests at the
    same moment are counted in turn.
    """
    found = await find_login(db, email)
    user = found if found is not None and not found.disabled else None
    # For an unknown address the statements match no row (a fresh random id).
    used_up = await _resets_used_up(db, user.id if user else uuid.uuid4())
    token, digest = tokens.new_token()
    address = user.email if user else email.strip().lower()[:254]
    minutes = int(tokens.LIFETIMES["reset"].total_seconds() // 60)
    mail = render(
        "password_reset",
        {"email": address, "link": link(settings, RESET_PAGE, token), "minutes": minutes},
        base_url=settings.link_base,
    )
    mailing = user is not None and not used_up
    await _retire_tokens(db, user.id if user and mailing else uuid.uuid4(), "reset")
    if user is None:
        return None
    if not mailing:
        return user.id, False
    now = dt.datetime.now(dt.UTC)
    db.add(
        MailToken(
            user_id=user.id,
            purpose="reset",
            token_hash=digest,
            email=address,
            expires_at=now + tokens.LIFETIMES["reset"],
        )
    )
    db.add(
        OutboxMail(
            kind="password_reset",
            to_address=address,
            subject=mail.subject,
            text_body=mail.text,
            html_body=mail.html,
        )
    )
    await db.flush()
    return user.id, True


async def _resets_used_up(db: AsyncSession, user_id: uuid.UUID) -> bool:
    """Whether the account was mailed its allowance of reset links within the window."""
    await db.scalar(select(User.id).where(User.id == user_id).with_for_update(key_share=True))
    count, window = RESET_ALLOWANCE
    mailed = await db.scalar(
        select(func.count())
        .select_from(MailToken)
        .where(
            MailToken.user_id == user_id,
            MailToken.purpose == "reset",
            MailToken.created_at > dt.datetime.now(dt.UTC) - window,
        )
    )
    return (mailed or 0) >= count


async def within_allowance(
    db: AsyncSession, *, kind: str, to: str, allowance: tuple[int, dt.timedelta], what: str
) -> None:
    """Refuse (429) another ``kind`` mail to ``to`` once it was mailed its allowance of them
    (the outbox keeps sent mails for a month). For mails to an address the asker chooses:
    the routes' limits are per client address only."""
    count, window = allowance
    now = dt.datetime.now(dt.UTC)
    sent = list(
        await db.scalars(
            select(OutboxMail.created_at)
            .where(
                OutboxMail.to_address == to,
                OutboxMail.kind == kind,
                OutboxMail.created_at > now - window,
            )
            .order_by(OutboxMail.created_at.desc())
            .limit(count)
        )
    )
    if len(sent) < count:
        return
    oldest = sent[-1] if sent[-1].tzinfo else sent[-1].replace(tzinfo=dt.UTC)
    wait = max(1, math.ceil((oldest + window - now).total_seconds()))
    raise RateLimited(
        f"too many {what} were mailed to {to!r} lately; try again in {math.ceil(wait / 60)} min",
        headers={"Retry-After": str(wait)},
    )


async def reset_password(
    db: AsyncSession,
    settings: ControlPlaneSettings,
    token: str,
    new_hash: str,
    *,
    ip: str,
) -> tuple[User, bool]:
    """Use a reset token: set the password, end every session of the user, and tell them
    (API keys, SFTP passwords and second factors stay: the mail says so).

    On an address never proven before, the account so far belonged to whoever knew the
    password, not to the mailbox: every way in set up meanwhile goes (second factors,
    passkeys, linked provider accounts, API keys, SSH keys and SFTP passwords), or whoever
    registered the address first (a squatter) would sign in past the owner's reset. The
    caller pushes the user's nodes' SFTP tables after commit when ``claimed`` is True."""
    row = await tokens.use(db, token, "reset")
    user = await db.get(User, row.user_id)
    if user is None or user.disabled or row.email != user.email:
        raise InvalidRequest(tokens.INVALID)
    user.password_hash = new_hash
    claimed = user.email_verified_at is None
    if claimed:
        # The link reached this mailbox: the address is proven, from now on.
        user.email_verified_at = dt.datetime.now(dt.UTC)
        await mfa.disable(db, user.id)
        for model in (PasskeyCredential, OAuthIdentity, ApiKey, SshKey, SftpPassword):
            await db.execute(delete(model).where(model.user_id == user.id))
    await end_all_sessions(db, user.id)  # and the other reset links
    await queue(
        db,
        kind="password_changed",
        to=user.email,
        context={
            "email": user.email,
            "ip": ip,
            "at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        },
        base_url=settings.link_base,
    )
    return user, claimed


async def _retire_tokens(db: AsyncSession, user_id: uuid.UUID, *purposes: str) -> None:
    await db.execute(
        update(MailToken)
        .where(
            MailToken.user_id == user_id,
            MailToken.purpose.in_(purposes),
            MailToken.used_at.is_(None),
        )
        .values(used_at=dt.datetime.now(dt.UTC))
        .execution_options(synchronize_session=False)
    )
