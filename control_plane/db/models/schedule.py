"""Schedules of a server: a cron expression, ordered tasks, and a record of every run.

A run holds a lease (``lease_expires_at``) that its control plane renews while it works; a
run whose lease ran out is one whose control plane died, and is marked failed by whichever
replica notices first (docs/schedules.md).
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from control_plane.db.models.base import Base, CreatedMixin, IdMixin
from control_plane.db.models.compat import CompatIdMixin


class Schedule(IdMixin, CreatedMixin, CompatIdMixin, Base):
    __tablename__ = "schedules"
    __table_args__ = (Index("ix_schedules_due", "active", "next_run_at"),)

    server_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("servers.id", ondelete="CASCADE"), index=True
    )
    # Who made it: its tasks act with this user's permissions, as they are at run time.
    creator_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(64))
    # Five fields, in the time zone of the server's owner.
    cron: Mapped[str] = mapped_column(String(128))
    only_when_online: Mapped[bool] = mapped_column(default=False)
    active: Mapped[bool] = mapped_column(default=True)
    # The next occurrence (UTC), or None while inactive.
    next_run_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    last_run_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class ScheduleTask(IdMixin, CompatIdMixin, Base):
    __tablename__ = "schedule_tasks"
    __table_args__ = (UniqueConstraint("schedule_id", "position"),)

    schedule_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("schedules.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int]
    # command | power | backup | delete_backups; ``payload`` is that action's input.
    action: Mapped[str] = mapped_column(String(16))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    delay_seconds: Mapped[int] = mapped_column(default=0)
    continue_on_failure: Mapped[bool] = mapped_column(default=False)


class ScheduleRun(IdMixin, Base):
    __tablename__ = "schedule_runs"
    __table_args__ = (Index("ix_schedule_runs_status_lease", "status", "lease_expires_at"),)

    schedule_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("schedules.id", ondelete="CASCADE"), index=True
    )
    # cron | manual
    trigger: Mapped[str] = mapped_column(String(8))
    # running → completed | failed; skipped (offline server, previous run still going)
    status: Mapped[str] = mapped_column(String(16), default="running")
    reason: Mapped[str | None] = mapped_column(Text, default=None)
    scheduled_for: Mapped[dt.datetime | None] = mapped_column(default=None)
    started_at: Mapped[dt.datetime]
    finished_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    # The replica running it and until when it may be presumed alive.
    holder: Mapped[str | None] = mapped_column(String(128), default=None)
    lease_expires_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    # One entry per task reached: position, action, status, reason, started_at, finished_at.
    outcomes: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
