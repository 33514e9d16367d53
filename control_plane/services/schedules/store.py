"""Schedules and their runs in the database: editing, claiming due runs exactly once, leases.

Claiming: a due schedule's ``next_run_at`` moves to its next occurrence in the same
transaction that records the run. On PostgreSQL the due rows are read ``FOR UPDATE SKIP
LOCKED``, so replicas claiming at once each get different schedules; on both databases the
move is a compare-and-set on the old ``next_run_at``, so an occurrence is claimed once even
if two claimers read the same row.
"""

from __future__ import annotations

import datetime as dt
import uuid
import zoneinfo
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.models import Schedule, ScheduleRun, ScheduleTask, Server, User
from control_plane.errors import NotFound
from control_plane.services.schedules import cron

MAX_TASKS = 10
# Runs kept per schedule; older ones are deleted when a new one starts.
KEPT_RUNS = 50
LEASE_EXPIRED = "the control plane running it stopped before it finished (its lease expired)"


@dataclass(frozen=True)
class Claimed:
    """A run this replica now holds."""

    run_id: uuid.UUID
    schedule_id: uuid.UUID
    # The occurrence it is for (None: run now).
    scheduled_for: dt.datetime | None = None


async def owner_zone(db: AsyncSession, server_id: uuid.UUID) -> zoneinfo.ZoneInfo:
    """The time zone of the server's owner (UTC if theirs is no longer known)."""
    name = await db.scalar(
        select(User.timezone).join(Server, Server.owner_id == User.id).where(Server.id == server_id)
    )
    try:
        return cron.zone(name or "UTC")
    except cron.InvalidTimezone:
        return cron.zone("UTC")


async def get_schedule(db: AsyncSession, server_id: uuid.UUID, schedule_id: uuid.UUID) -> Schedule:
    schedule = await db.get(Schedule, schedule_id)
    if schedule is None or schedule.server_id != server_id:
        raise NotFound("no such schedule")
    return schedule


async def tasks_of(db: AsyncSession, schedule_id: uuid.UUID) -> list[ScheduleTask]:
    return list(
        await db.scalars(
            select(ScheduleTask)
            .where(ScheduleTask.schedule_id == schedule_id)
            .order_by(ScheduleTask.position)
        )
    )


async def runs_of(db: AsyncSession, schedule_id: uuid.UUID, limit: int) -> list[ScheduleRun]:
    return list(
        await db.scalars(
            select(ScheduleRun)
            .where(ScheduleRun.schedule_id == schedule_id)
            .order_by(ScheduleRun.started_at.desc(), ScheduleRun.id)
            .limit(limit)
        )
    )


async def reschedule(db: AsyncSession, schedule: Schedule, now: dt.datetime) -> None:
    """Set ``next_run_at`` from the expression, the owner's zone and ``now``."""
    if not schedule.active:
        schedule.next_run_at = None
        return
    schedule.next_run_at = cron.next_run(
        schedule.cron, await owner_zone(db, schedule.server_id), now
    )


async def reschedule_owner(db: AsyncSession, owner_id: uuid.UUID, now: dt.datetime) -> None:
    """Every schedule on the servers of ``owner_id`` again (their time zone changed)."""
    rows = await db.scalars(
        select(Schedule)
        .join(Server, Server.id == Schedule.server_id)
        .where(Server.owner_id == owner_id, Schedule.active.is_(True))
    )
    for schedule in rows:
        await reschedule(db, schedule, now)


async def _live_run(db: AsyncSession, schedule_id: uuid.UUID, now: dt.datetime) -> bool:
    running = await db.scalar(
        select(ScheduleRun.id)
        .where(
            ScheduleRun.schedule_id == schedule_id,
            ScheduleRun.status == "running",
            ScheduleRun.lease_expires_at > now,
        )
        .limit(1)
    )
    return running is not None


async def _trim(db: AsyncSession, schedule_id: uuid.UUID) -> None:
    old = list(
        await db.scalars(
            select(ScheduleRun.id)
            .where(ScheduleRun.schedule_id == schedule_id, ScheduleRun.status != "running")
            .order_by(ScheduleRun.started_at.desc())
            .offset(KEPT_RUNS)
        )
    )
    for run_id in old:
        stale = await db.get(ScheduleRun, run_id)
        if stale is not None:
            await db.delete(stale)


async def start_run(
    db: AsyncSession,
    schedule: Schedule,
    *,
    trigger: str,
    now: dt.datetime,
    holder: str,
    lease: dt.timedelta,
    scheduled_for: dt.datetime | None = None,
) -> ScheduleRun:
    """Record a run that starts now, held by ``holder`` until ``now + lease``; a run while
    the last one is still alive is recorded as skipped instead."""
    run = ScheduleRun(
        id=uuid.uuid4(),
        schedule_id=schedule.id,
        trigger=trigger,
        scheduled_for=scheduled_for,
        started_at=now,
        outcomes=[],
    )
    if await _live_run(db, schedule.id, now):
        run.status, run.reason, run.finished_at = "skipped", "the last run is still going", now
    else:
        run.status, run.holder, run.lease_expires_at = "running", holder, now + lease
    schedule.last_run_at = now
    await _trim(db, schedule.id)
    db.add(run)
    await db.flush()
    return run


async def claim_due(
    db: AsyncSession,
    *,
    now: dt.datetime,
    holder: str,
    lease: dt.timedelta,
    batch: int,
) -> list[Claimed]:
    """Claim up to ``batch`` schedules that are due: each gets a run (exactly once per
    occurrence across replicas) and its next occurrence. Runs recorded as skipped are
    finished already and not returned."""
    query = (
        select(Schedule)
        .where(Schedule.active.is_(True), Schedule.next_run_at <= now)
        .order_by(Schedule.next_run_at)
        .limit(batch)
    )
    if db.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True, of=Schedule)
    claimed: list[Claimed] = []
    for schedule in list(await db.scalars(query)):
        occurrence = schedule.next_run_at
        following = cron.next_run(schedule.cron, await owner_zone(db, schedule.server_id), now)
        moved = await db.execute(
            update(Schedule)
            .where(Schedule.id == schedule.id, Schedule.next_run_at == occurrence)
            .values(next_run_at=following)
            .execution_options(synchronize_session=False)
        )
        if getattr(moved, "rowcount", 0) != 1:
            continue  # another claimer moved it first
        schedule.next_run_at = following
        run = await start_run(
            db,
            schedule,
            trigger="cron",
            now=now,
            holder=holder,
            lease=lease,
            scheduled_for=occurrence,
        )
        if run.status == "running":
            claimed.append(Claimed(run.id, schedule.id, occurrence))
    return claimed


async def expire_leases(db: AsyncSession, now: dt.datetime) -> int:
    """Mark failed every run whose control plane stopped renewing its lease."""
    result = await db.execute(
        update(ScheduleRun)
        .where(ScheduleRun.status == "running", ScheduleRun.lease_expires_at <= now)
        .values(status="failed", reason=LEASE_EXPIRED, finished_at=now, lease_expires_at=None)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def held(db: AsyncSession, run_id: uuid.UUID, holder: str, now: dt.datetime) -> bool:
    """Whether ``holder`` still holds the run ``run_id`` under a live lease (a replica that
    was frozen past it may find it marked failed, and its schedule run by another)."""
    found = await db.scalar(
        select(ScheduleRun.id).where(
            ScheduleRun.id == run_id,
            ScheduleRun.status == "running",
            ScheduleRun.holder == holder,
            ScheduleRun.lease_expires_at > now,
        )
    )
    return found is not None


async def renew(
    db: AsyncSession, run_ids: list[uuid.UUID], holder: str, until: dt.datetime
) -> None:
    """Extend the leases of runs ``holder`` is still running."""
    if run_ids:
        await db.execute(
            update(ScheduleRun)
            .where(
                ScheduleRun.id.in_(run_ids),
                ScheduleRun.holder == holder,
                ScheduleRun.status == "running",
            )
            .values(lease_expires_at=until)
            .execution_options(synchronize_session=False)
        )


async def add_outcome(db: AsyncSession, run_id: uuid.UUID, outcome: dict[str, Any]) -> None:
    run = await db.get(ScheduleRun, run_id)
    if run is not None:
        # A new list: the JSON column is not mutation-tracked.
        run.outcomes = [*run.outcomes, outcome]


async def finish(
    db: AsyncSession, run_id: uuid.UUID, status: str, reason: str | None, now: dt.datetime
) -> None:
    """End a run this replica holds (one already expired by another stays as it was)."""
    run = await db.get(ScheduleRun, run_id)
    if run is None or run.status != "running":
        return
    run.status, run.reason, run.finished_at, run.lease_expires_at = status, reason, now, None
