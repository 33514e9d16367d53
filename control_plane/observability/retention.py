"""The retention job: once across replicas (a lease per run), every few minutes, resource
history buckets older than their tier keeps are deleted (``resource_history.trim``), and so
are sessions that sign in no more (past their absolute end or idle too long: a browser that
never came back leaves its row behind)."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from typing import Final

import structlog
from aiohttp import web

from control_plane import background
from control_plane.db.leases import LeaseKeeper
from control_plane.db.session import transaction
from control_plane.keys import LEASES, METRICS, SESSIONS, SETTINGS, WALL_CLOCK
from control_plane.security import sessions
from control_plane.services import resource_history

log = structlog.get_logger("stats.retention")
JOB: Final = "stats-retention"
INTERVAL_SECONDS: Final = 300.0


async def run_retention(app: web.Application, leases: LeaseKeeper) -> int | None:
    """One run, if no other replica holds the job's lease (of ``leases``, this replica's):
    resource history rows deleted, or None when another held it."""
    metrics = app[METRICS]
    async with leases.for_run(JOB) as lease:
        if lease is None:
            return None
        metrics.job_runs.labels(JOB).inc()
        try:
            async with transaction(app[SESSIONS]) as db:
                deleted = await resource_history.trim(db, app[WALL_CLOCK]())
            ended = await _sweep_sessions(app)
        except Exception:
            metrics.job_failures.labels(JOB).inc()
            raise
    if deleted:
        log.info("resource history trimmed", rows=deleted)
    if ended:
        log.info("ended sessions deleted", rows=ended)
    return deleted


async def _sweep_sessions(app: web.Application) -> int:
    """Delete ended sessions, a batch a transaction; how many."""
    idle = dt.timedelta(minutes=app[SETTINGS].session_idle_minutes)
    total = 0
    while True:
        async with transaction(app[SESSIONS]) as db:
            # Sessions end by the time a cookie's lookup reads, not the stats' clock.
            ended = await sessions.sweep_ended(db, dt.datetime.now(dt.UTC), idle)
        total += ended
        if ended < sessions.SWEEP_BATCH:
            return total


async def retention_job(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: trim the resource history while the app runs."""

    async def loop() -> None:
        while True:
            try:
                await run_retention(app, app[LEASES])
            except Exception:
                log.exception("resource history retention failed")
            await asyncio.sleep(INTERVAL_SECONDS)

    task = asyncio.create_task(loop(), name=JOB)
    yield
    await background.stop(task)
