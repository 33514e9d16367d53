"""The audit trail: hash-chained rows that ``stellar-cp audit verify`` can check.

Each row's hash covers its own fields and the previous row's hash; rows get consecutive ids
under a lock on the chain head, and the head keeps the last id and hash. Editing, deleting or
reordering any row, or dropping the newest ones, breaks verification at that row. A writer
that finds the head missing or behind the rows records the break (``audit.chain.broken``)
and goes on after the newest row, so verification keeps naming it. (Someone who can rewrite
the whole table and the head can forge a consistent chain: keep copies of the head hash
elsewhere for that threat.)
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.models import AuditEntry, AuditHead
from control_plane.services import domain_events
from shared.logging import redact

GENESIS = "0" * 64
HEAD_ID = 1
# The action of the row written when the chain was found broken (see ``append``).
BROKEN = "audit.chain.broken"
# A head put back in place of a deleted one, until this transaction fills it in.
_MISSING = -1
log = structlog.get_logger("audit")


@dataclass(frozen=True)
class Actor:
    """Who did it, from where."""

    user_id: uuid.UUID | None
    email: str | None
    ip: str | None
    user_agent: str | None


@dataclass(frozen=True)
class AuditEvent:
    """What happened: a dotted action (``server.power.start``) and its target."""

    action: str
    target_type: str | None = None
    target_id: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)


def _canonical(entry: AuditEntry) -> bytes:
    fields = {
        "id": entry.id,
        "created_at": entry.created_at.astimezone(dt.UTC).isoformat(),
        "actor_id": str(entry.actor_id) if entry.actor_id else None,
        "actor_email": entry.actor_email,
        "action": entry.action,
        "target_type": entry.target_type,
        "target_id": entry.target_id,
        "ip": entry.ip,
        "user_agent": entry.user_agent,
        "details": entry.details,
        "prev_hash": entry.prev_hash,
    }
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def entry_hash(entry: AuditEntry) -> str:
    return hashlib.sha256(_canonical(entry)).hexdigest()


async def append(db: AsyncSession, actor: Actor | None, event: AuditEvent) -> AuditEntry:
    """Add one row at the end of the chain, inside the caller's transaction.

    If ``audit_head`` is missing or names a row older than the newest one, the chain goes on
    after the newest row, behind an ``audit.chain.broken`` row that says what was found:
    audited actions keep working, and ``audit verify`` keeps naming the break.
    """
    head = await _locked_head(db)
    newest = (
        await db.execute(
            select(AuditEntry.id, AuditEntry.hash).order_by(AuditEntry.id.desc()).limit(1)
        )
    ).first()
    last_id, last_hash = (newest.id, newest.hash) if newest is not None else (0, GENESIS)
    found = _break_found(head, last_id)
    if found is not None:
        log.error("audit chain broken; resuming after the newest row", found=found, row=last_id)
        head.last_id, head.last_hash = last_id, last_hash
        _add(
            db,
            head,
            None,
            AuditEvent(BROKEN, details={"found": found, "resumed_after_row": last_id}),
        )
    entry = _add(db, head, actor, event)
    await db.flush()
    await domain_events.publish(
        db,
        domain_events.DomainEvent(
            action=entry.action,
            target_type=entry.target_type,
            target_id=entry.target_id,
            details=entry.details,
            actor_id=entry.actor_id,
            actor_email=entry.actor_email,
            ip=entry.ip,
            user_agent=entry.user_agent,
            at=entry.created_at,
        ),
    )
    return entry


def _break_found(head: AuditHead, last_id: int) -> str | None:
    """Why the chain cannot go on from ``head`` (the newest row is ``last_id``), if so.

    A head ahead of the rows (the newest were deleted) or with another hash is not such a
    case: the chain goes on from the head, and verify names the gap or the mismatch.
    """
    if head.last_id == _MISSING:
        return "audit_head was missing"
    if head.last_id < last_id:
        return (
            f"audit_head named row {head.last_id} as the newest, "
            f"but the rows went on to row {last_id}"
        )
    return None


async def _locked_head(db: AsyncSession) -> AuditHead:
    """The chain head, locked until the transaction ends; put back (``_MISSING``) if gone."""
    head = await db.scalar(select(AuditHead).where(AuditHead.id == HEAD_ID).with_for_update())
    if head is not None:
        return head
    # A concurrent writer that also found it missing waits here for this one's placeholder,
    # then reads the head this transaction commits.
    insert = sqlite_insert if db.get_bind().dialect.name == "sqlite" else postgresql_insert
    await db.execute(
        insert(AuditHead)
        .values(id=HEAD_ID, last_id=_MISSING, last_hash="")
        .on_conflict_do_nothing(index_elements=[AuditHead.id])
    )
    head = await db.scalar(
        select(AuditHead)
        .where(AuditHead.id == HEAD_ID)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if head is None:
        raise RuntimeError("audit_head could not be put back")
    return head


def _add(db: AsyncSession, head: AuditHead, actor: Actor | None, event: AuditEvent) -> AuditEntry:
    """The row after ``head``, added to the session; ``head`` then names it."""
    details = json.loads(json.dumps(redact(dict(event.details)), default=str))
    entry = AuditEntry(
        id=head.last_id + 1,
        created_at=dt.datetime.now(dt.UTC),
        actor_id=actor.user_id if actor else None,
        actor_email=actor.email if actor else None,
        action=event.action,
        target_type=event.target_type,
        target_id=event.target_id,
        ip=actor.ip if actor else None,
        user_agent=(actor.user_agent or "")[:255] if actor else None,
        details=details,
        prev_hash=head.last_hash,
    )
    entry.hash = entry_hash(entry)
    db.add(entry)
    head.last_id = entry.id
    head.last_hash = entry.hash
    return entry


async def verify_chain(db: AsyncSession, *, batch: int = 1000) -> list[str]:
    """Every break in the chain, as ``row N: reason``; empty when the trail is intact."""
    problems: list[str] = []
    expected_prev, expected_id = GENESIS, 1
    after: int | None = None  # from the lowest id there is: rows below 1 are read too
    while True:
        query = select(AuditEntry).order_by(AuditEntry.id).limit(batch)
        if after is not None:
            query = query.where(AuditEntry.id > after)
        rows = list(await db.scalars(query))
        for entry in rows:
            after = entry.id
            if entry.id < 1:
                problems.append(f"row {entry.id}: outside the chain (its ids start at 1)")
                continue
            if entry.id != expected_id:
                problems.append(f"row {entry.id}: rows {expected_id}..{entry.id - 1} are missing")
            if entry.prev_hash != expected_prev:
                problems.append(f"row {entry.id}: does not follow the row before it")
            if entry_hash(entry) != entry.hash:
                problems.append(f"row {entry.id}: contents were changed after it was written")
            elif entry.action == BROKEN:
                problems.append(_broken_here(entry))
            expected_prev, expected_id = entry.hash, entry.id + 1
        if len(rows) < batch:
            break
    head = await db.get(AuditHead, HEAD_ID)
    if head is None:
        # The migration creates the head and nothing deletes it: without it, the newest rows
        # could have gone with it unseen.
        rows_text = f"the rows go up to row {expected_id - 1}" if expected_id > 1 else "no rows"
        problems.append(f"audit_head: missing ({rows_text})")
    else:
        problems.extend(_head_problems(head, expected_id - 1, expected_prev))
    return problems


def _broken_here(entry: AuditEntry) -> str:
    details = entry.details if isinstance(entry.details, dict) else {}
    return (
        f"row {entry.id}: the chain was found broken here and resumed after row "
        f"{details.get('resumed_after_row')}: {details.get('found')}"
    )


def _head_problems(head: AuditHead, last_id: int, last_hash: str) -> list[str]:
    """How ``audit_head`` disagrees with the last row present (``last_id``, 0 if none)."""
    if head.last_id > last_id:
        return [f"row {head.last_id}: the newest rows after row {last_id} were removed"]
    if head.last_id < last_id:
        return [
            f"audit_head: names row {head.last_id} as the newest, "
            f"but the rows go on to row {last_id}"
        ]
    if head.last_hash != last_hash:
        return [f"row {last_id}: its hash is not the one audit_head keeps for it"]
    return []
