"""Alerts by mail that users opt into, queued from domain events inside their transaction.

Subscribed in ``domain_events.subscribers()``: a server crashed, a backup failed, a disk
full or nearly full (to the owner and the server's sub-users who asked), and a sign-in from
a device the user never signed in from (a device = user agent + the address's /24 or /64).
Only rows are added (the outbox, known devices); nothing waits on the network.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import uuid
from typing import Any, Final

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.models import AlertPreferences, KnownDevice, Server, Subuser, User
from control_plane.mail.outbox import MailContext, mail_context, queue
from control_plane.services.domain_events import DomainEvent

# Audit action → (the preference that enables it, the mail kind).
SERVER_ALERTS: Final = {
    "server.crashed": ("server_crashed", "server_crashed"),
    "server.backup.failed": ("backup_failed", "backup_failed"),
    "server.disk.full": ("disk_full", "disk_full"),
    # 90 % of the limit, from the agent's resource samples (control_plane/nodes/events.py).
    "server.disk.nearly_full": ("disk_full", "disk_nearly_full"),
}
SIGN_IN: Final = "user.login.succeeded"


async def on_event(db: AsyncSession, event: DomainEvent) -> None:
    """The domain-event subscriber."""
    if event.action == SIGN_IN and event.actor_id is not None:
        await _sign_in(db, event, event.actor_id)
        return
    context = mail_context(db)
    if context is None or event.action not in SERVER_ALERTS or event.target_type != "server":
        return
    preference, kind = SERVER_ALERTS[event.action]
    try:
        server = await db.get(Server, uuid.UUID(str(event.target_id)))
    except ValueError:
        return
    if server is None:
        return
    values: dict[str, Any] = {
        "server_name": server.name,
        "at": _when(event.at),
        "restarting": bool(event.details.get("restarting")),
        "reason": str(event.details.get("reason") or "unknown reason"),
        "full": event.action == "server.disk.full",
    }
    for address in await _recipients(db, server, preference):
        await queue(db, kind=kind, to=address, context=values, base_url=context.base_url)


async def _recipients(db: AsyncSession, server: Server, preference: str) -> list[str]:
    """The owner and the server's sub-users who opted into ``preference`` (enabled users)."""
    wanted = getattr(AlertPreferences, preference).is_(True)
    subusers = select(Subuser.user_id).where(Subuser.server_id == server.id)
    rows = await db.scalars(
        select(User.email)
        .join(AlertPreferences, AlertPreferences.user_id == User.id)
        .where(
            wanted,
            User.disabled.is_(False),
            (User.id == server.owner_id) | User.id.in_(subusers),
        )
        .order_by(User.email)
    )
    return list(rows)


def device_fingerprint(user_agent: str, ip: str) -> str:
    """The user agent and the network (/24 for IPv4, /64 for IPv6), hashed."""
    try:
        address = ipaddress.ip_address(ip)
        prefix = 24 if address.version == 4 else 64
        network = str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))
    except ValueError:
        network = ip
    return hashlib.sha256(f"{user_agent}\n{network}".encode()).hexdigest()


async def _sign_in(db: AsyncSession, event: DomainEvent, user_id: uuid.UUID) -> None:
    fingerprint = device_fingerprint(event.user_agent or "", event.ip or "")
    known = await db.scalar(
        select(func.count()).select_from(KnownDevice).where(KnownDevice.user_id == user_id)
    )
    added = await _remember_device(db, user_id, fingerprint, event.at)
    context = mail_context(db)
    # A first sign-in (registration, or the first since this feature) is nobody's alarm.
    if not added or not known or context is None or event.details.get("method") == "registration":
        return
    wants = await db.scalar(
        select(AlertPreferences.new_sign_in).where(AlertPreferences.user_id == user_id)
    )
    user = await db.get(User, user_id)
    if wants and user is not None:
        await _queue_sign_in(db, context, user, event)


async def _remember_device(
    db: AsyncSession, user_id: uuid.UUID, fingerprint: str, at: dt.datetime
) -> bool:
    """Record the device; True if it was new. ON CONFLICT: two sign-ins from one new device
    at once must not fail either sign-in."""
    dialect = postgresql if db.get_bind().dialect.name == "postgresql" else sqlite
    values = {
        "id": uuid.uuid4(),
        "created_at": at,
        "user_id": user_id,
        "fingerprint": fingerprint,
        "last_seen_at": at,
    }
    inserted = await db.execute(
        dialect.insert(KnownDevice).values(**values).on_conflict_do_nothing()
    )
    if inserted.rowcount == 1:  # type: ignore[attr-defined]
        return True
    await db.execute(
        update(KnownDevice)
        .where(KnownDevice.user_id == user_id, KnownDevice.fingerprint == fingerprint)
        .values(last_seen_at=at)
        .execution_options(synchronize_session=False)
    )
    return False


async def _queue_sign_in(
    db: AsyncSession, context: MailContext, user: User, event: DomainEvent
) -> None:
    await queue(
        db,
        kind="new_sign_in",
        to=user.email,
        context={
            "email": user.email,
            "ip": event.ip or "unknown",
            "user_agent": event.user_agent or "unknown",
            "at": _when(event.at),
        },
        base_url=context.base_url,
    )


def _when(at: dt.datetime) -> str:
    return at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
