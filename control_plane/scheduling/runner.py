"""The scheduler loop of one control-plane replica.

Each tick: runs whose lease ran out (their control plane died) are marked failed; due
schedules are claimed (exactly once across replicas: ``store.claim_due``) and run as tasks
of this process; the leases of the runs still going here are renewed. A run never waits on
a node inside a transaction: each step reads, acts, then records in a transaction of its
own.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import secrets
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import structlog
from aiohttp import web

from control_plane import background
from control_plane.db.models import Schedule, ScheduleTask, Server
from control_plane.db.session import transaction
from control_plane.errors import ApiError
from control_plane.keys import LEASES, READ_SESSIONS, SCHEDULER, SESSIONS, SETTINGS
from control_plane.scheduling import tasks
from control_plane.scheduling.clock import SchedulerClock, SystemClock
from control_plane.services.schedules import store
from control_plane.services.schedules.store import Claimed

log = structlog.get_logger("scheduler")
OFFLINE = "the server is not running (the schedule runs only when it is online)"


class Scheduler:
    """Claims and runs this replica's share of due schedules."""

    def __init__(self, app: web.Application, clock: SchedulerClock) -> None:
        settings = app[SETTINGS]
        self._app = app
        self.clock = clock
        self.tick_seconds = settings.schedule_tick_seconds
        self.lease = dt.timedelta(seconds=settings.schedule_lease_seconds)
        # Schedules claimed per transaction (tests make it small to interleave replicas).
        self.batch = 200
        # Runs doing work at once: well below the database pool, so that API requests always
        # find a connection while a thousand schedules fall due together.
        self._slots = asyncio.Semaphore(settings.schedule_concurrency)
        self.holder = f"{socket.gethostname()[:64]}:{os.getpid()}:{secrets.token_hex(4)}"
        self._running: dict[uuid.UUID, asyncio.Task[None]] = {}

    async def tick(self) -> list[Claimed]:
        """One round: expire dead runs, claim and start due ones, renew live leases."""
        now = self.clock.now()
        async with transaction(self._app[SESSIONS]) as db:
            expired = await store.expire_leases(db, now)
        if expired:
            log.warning("runs of a stopped control plane marked failed", runs=expired)
        claimed: list[Claimed] = []
        # A replica standing aside (it cannot reach the nodes the others follow:
        # control_plane/nodes/events.py) claims none: its runs would fail at their node.
        leases = self._app.get(LEASES)  # (none without background jobs: tests tick by hand)
        while leases is None or leases.counted:
            async with transaction(self._app[SESSIONS]) as db:
                batch = await store.claim_due(
                    db, now=now, holder=self.holder, lease=self.lease, batch=self.batch
                )
            claimed.extend(batch)
            if len(batch) < self.batch:
                break
        # Launched once all are claimed: the runs' own writes would otherwise queue the
        # next claims behind them (SQLite has one writer at a time).
        for run in claimed:
            self.launch(run)
        await self.renew()
        return claimed

    async def renew(self) -> None:
        if self._running:
            async with transaction(self._app[SESSIONS]) as db:
                await store.renew(
                    db, list(self._running), self.holder, self.clock.now() + self.lease
                )

    def launch(self, run: Claimed) -> None:
        """Run ``run`` (recorded as held by this replica) in the background."""
        task = asyncio.create_task(self._execute(run), name=f"schedule-run-{run.run_id}")
        self._running[run.run_id] = task
        task.add_done_callback(lambda _: self._running.pop(run.run_id, None))

    async def drain(self) -> None:
        """Wait for the runs going now (tests)."""
        while self._running:
            await asyncio.gather(*self._running.values(), return_exceptions=True)

    async def run_forever(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:
                log.exception("scheduler tick failed")
            await self.clock.sleep(self.tick_seconds)

    async def close(self) -> None:
        """Stop this replica's runs and record them failed (not left for the lease)."""
        running = list(self._running.items())
        for _, task in running:
            task.cancel()
        await asyncio.gather(*(t for _, t in running), return_exceptions=True)
        if running:
            async with transaction(self._app[SESSIONS]) as db:
                for run_id, _ in running:
                    await store.finish(
                        db, run_id, "failed", "the control plane shut down", self.clock.now()
                    )

    async def _execute(self, run: Claimed) -> None:
        async with self._slots:
            last: dict[str, Any] | None = None
            try:
                status, reason, last = await self._steps(run)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("schedule run failed", run=str(run.run_id))
                status, reason = "failed", "internal error (see the control plane's log)"
            async with transaction(self._app[SESSIONS]) as db:
                if last is not None:
                    await store.add_outcome(db, run.run_id, last)
                await store.finish(db, run.run_id, status, reason, self.clock.now())

    async def _outcome(self, run: Claimed, outcome: dict[str, Any]) -> None:
        async with transaction(self._app[SESSIONS]) as db:
            await store.add_outcome(db, run.run_id, outcome)

    async def _still_held(self, run: Claimed) -> bool:
        async with transaction(self._app[READ_SESSIONS]) as db:
            return await store.held(db, run.run_id, self.holder, self.clock.now())

    async def _steps(self, run: Claimed) -> tuple[str, str | None, dict[str, Any] | None]:
        """Run the tasks; return the run's status and reason, and the last task's outcome
        (recorded with the run's end: one commit fewer per run, which SQLite feels)."""
        async with transaction(self._app[READ_SESSIONS]) as db:
            schedule = await db.get(Schedule, run.schedule_id)
            server = await db.get(Server, schedule.server_id) if schedule else None
            todo: list[ScheduleTask] = await store.tasks_of(db, run.schedule_id)
        if schedule is None or server is None:
            return "failed", "the schedule was deleted", None
        if schedule.only_when_online and server.state != "running":
            return "skipped", OFFLINE, None
        failed = False
        last: dict[str, Any] | None = None
        for index, task in enumerate(todo):
            final = index == len(todo) - 1
            base = {"position": task.position, "action": task.action}
            if failed:
                skipped = {**base, "status": "skipped", "reason": "an earlier task failed"}
                if final:
                    last = skipped
                else:
                    await self._outcome(run, skipped)
                continue
            if task.delay_seconds:
                # A run waiting out a delay (up to 15 minutes) leaves its slot to others.
                self._slots.release()
                try:
                    await self.clock.sleep(task.delay_seconds)
                finally:
                    await self._slots.acquire()
            if not await self._still_held(run):
                # Frozen past the lease (SIGSTOP, a pause): the run may have been marked
                # failed and the schedule run by another replica; nothing more is done here.
                log.warning("schedule run: lease lost; its tasks stop", run=str(run.run_id))
                return "failed", store.LEASE_EXPIRED, last
            started = self.clock.now().isoformat()
            try:
                note = await tasks.perform(self._app, run.schedule_id, task)
                status = "completed"
            except ApiError as err:
                note, status = err.message, "failed"
            except ValueError as err:  # a stored task the input rules now refuse
                note, status = f"invalid task: {err}", "failed"
            outcome = {
                **base,
                "status": status,
                "reason": note,
                "started_at": started,
                "finished_at": self.clock.now().isoformat(),
            }
            if final:
                last = outcome
            else:
                await self._outcome(run, outcome)
            if status == "failed" and not task.continue_on_failure:
                failed = True
        if failed:
            return "failed", "a task failed", last
        return "completed", None, last


def scheduler_ctx(
    clock: SchedulerClock | None, *, loop: bool
) -> Callable[[web.Application], AsyncIterator[None]]:
    """cleanup_ctx: the app's :class:`Scheduler` ("run now" uses it); with ``loop`` its
    ticking task too, which lives exactly as long as the app."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        scheduler = Scheduler(app, clock or SystemClock())
        app[SCHEDULER] = scheduler
        ticking = asyncio.create_task(scheduler.run_forever(), name="scheduler") if loop else None
        yield
        if ticking is not None:
            await background.stop(ticking)
        await scheduler.close()

    return ctx
