"""The background sender of the webhook outbox.

Each process runs one dispatcher (``webhook_dispatcher_ctx``, a cleanup_ctx). It claims due
deliveries in a short transaction: on PostgreSQL with ``FOR UPDATE SKIP LOCKED``, so several
replicas share the rows without taking the same one; claiming moves a row's
``next_attempt_at`` past the attempt's deadline (a lease), so a row whose sender died is due
again after that. Attempts run as tasks of their own, at most ``STELLAR_WEBHOOK_CONCURRENCY``
at once and at most half of them for one webhook, each within
``STELLAR_WEBHOOK_TIMEOUT_SECONDS``: a slow or dead endpoint holds a few slots, never the API.

What an attempt's outcome leads to (delivered, retried with backoff and jitter, failed and
the webhook disabled) is retries.py's. Outcomes are written in one transaction per batch.
Finished rows are pruned after ``STELLAR_WEBHOOK_LOG_DAYS``, by one replica at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Final

import structlog
from aiohttp import web
from multidict import CIMultiDictProxy
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from control_plane import background
from control_plane.db.leases import LeaseKeeper
from control_plane.db.models import Webhook, WebhookDelivery
from control_plane.db.session import transaction
from control_plane.keys import ENGINE, LEASES, READ_SESSIONS, SECRET_BOX, SESSIONS, SETTINGS
from control_plane.security.encryption import EncryptionError, SecretBox
from control_plane.services.webhooks import outbox
from control_plane.services.webhooks.catalogue import TEST_EVENT
from control_plane.services.webhooks.guard import WebhookUrlGuard
from control_plane.services.webhooks.retries import Outcome, RetryPolicy, disable, record_attempt
from control_plane.services.webhooks.signing import signed_headers
from control_plane.settings import ControlPlaneSettings
from shared.errors import ApiError
from shared.outbound import OutboundClient

log = structlog.get_logger("webhooks")
LEASE_MARGIN_SECONDS: Final = 30.0
MAX_RESPONSE_BYTES: Final = 64 * 1024
PRUNE_EVERY_SECONDS: Final = 600.0
RECORD_BATCH_SECONDS: Final = 0.05
Clock = Callable[[], dt.datetime]


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class _Job:
    """One claimed attempt, with what it needs from the webhook."""

    delivery_id: uuid.UUID
    webhook_id: uuid.UUID
    url: str
    secret_token: str
    body: str
    event_type: str
    created_at: dt.datetime


def _retry_after(headers: CIMultiDictProxy[str]) -> float | None:
    """The receiver's ``Retry-After`` in seconds; None for a date or anything else (ASCII
    digits only: ``str.isdigit`` also takes "²", which ``float`` refuses)."""
    value = headers.get("Retry-After", "").strip()
    return float(value) if value.isascii() and value.isdigit() else None


class WebhookDispatcher:
    """Claims due deliveries and sends them; see the module docstring."""

    def __init__(
        self,
        *,
        engine: AsyncEngine,
        leases: LeaseKeeper,
        sessions: async_sessionmaker[AsyncSession],
        read_sessions: async_sessionmaker[AsyncSession],
        settings: ControlPlaneSettings,
        box: SecretBox,
        outbound: OutboundClient,
        clock: Clock = _utcnow,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._engine = engine
        self._leases = leases
        self._sessions = sessions
        self._read_sessions = read_sessions
        self._settings = settings
        self._box = box
        self._outbound = outbound
        self._clock = clock
        self._policy = RetryPolicy(
            settings.webhook_retry_base_seconds, settings.webhook_retry_window_seconds, jitter
        )
        self._concurrency = settings.webhook_concurrency
        self._per_webhook = max(1, settings.webhook_concurrency // 2)
        self._claim_at = max(1, settings.webhook_concurrency // 2)
        self._in_flight: dict[uuid.UUID, _Job] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._slot_freed = asyncio.Event()
        # Finished attempts waiting to be written, in one transaction per batch.
        self._outcomes: list[tuple[_Job, Outcome]] = []
        self._outcomes_ready = asyncio.Event()
        self._last_prune = 0.0

    async def run(self) -> None:
        """Claim and send until cancelled; results are written by a task of their own."""
        recorder = asyncio.create_task(self._record_outcomes(), name="webhook-recorder")
        try:
            while True:
                started = 0
                try:
                    started = await self.claim_and_start()
                    if time.monotonic() - self._last_prune > PRUNE_EVERY_SECONDS:
                        self._last_prune = time.monotonic()
                        await self.prune()
                except Exception:
                    log.exception("webhook dispatch failed")
                # Claim again once half the slots are free (or none is busy): one claim per
                # batch, not one per finished attempt.
                while started == 0 or self._free_slots() < self._claim_at:
                    self._slot_freed.clear()
                    try:
                        async with asyncio.timeout(self._settings.webhook_poll_seconds):
                            await self._slot_freed.wait()
                    except TimeoutError:
                        break
                    if not self._in_flight or self._free_slots() >= self._claim_at:
                        break
        finally:
            recorder.cancel()
            await asyncio.gather(recorder, return_exceptions=True)

    def _free_slots(self) -> int:
        return self._concurrency - len(self._in_flight)

    async def claim_and_start(self) -> int:
        """Claim what is due (as many as there are free slots) and start sending it."""
        free = self._free_slots()
        if free <= 0 or not await self._anything_due():
            return 0
        jobs = await self._claim(free)
        for job in jobs:
            self._in_flight[job.delivery_id] = job
            task = asyncio.create_task(self._send(job), name=f"webhook-{job.delivery_id}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return len(jobs)

    async def _anything_due(self) -> bool:
        # A read first: on SQLite a claim takes the write lock, which an idle panel should not.
        async with transaction(self._read_sessions) as db:
            found = await db.scalar(
                select(WebhookDelivery.id)
                .where(
                    WebhookDelivery.status == "pending",
                    WebhookDelivery.next_attempt_at <= self._clock(),
                )
                .limit(1)
            )
        return found is not None

    async def _claim(self, free: int) -> list[_Job]:
        now = self._clock()
        lease = dt.timedelta(seconds=self._settings.webhook_timeout_seconds + LEASE_MARGIN_SECONDS)
        busy: dict[uuid.UUID, int] = {}
        for job in self._in_flight.values():
            busy[job.webhook_id] = busy.get(job.webhook_id, 0) + 1
        full = [hook for hook, count in busy.items() if count >= self._per_webhook]
        query = (
            select(WebhookDelivery, Webhook)
            .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
            .where(
                WebhookDelivery.status == "pending",
                WebhookDelivery.next_attempt_at <= now,
                Webhook.enabled.is_(True),
            )
            .order_by(WebhookDelivery.next_attempt_at)
            .limit(free * 4)
        )
        if full:
            query = query.where(WebhookDelivery.webhook_id.not_in(full))
        if self._engine.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True, of=WebhookDelivery)
        jobs: list[_Job] = []
        turn_off: set[uuid.UUID] = set()
        async with transaction(self._sessions) as db:
            standings: dict[uuid.UUID, str] = {}
            for delivery, hook in (await db.execute(query)).all():
                if len(jobs) >= free or busy.get(hook.id, 0) >= self._per_webhook:
                    continue
                # Asked again now: the delivery may have waited (retries, a receiver down)
                # while the user the webhook sends for lost access to what it says.
                if hook.id not in standings:
                    standings[hook.id] = await outbox.standing(db, hook)
                if outbox.turns_off(standings[hook.id]):
                    turn_off.add(hook.id)
                    continue
                why = outbox.withheld(standings[hook.id], delivery.event_type)
                if why is not None:
                    delivery.status, delivery.next_attempt_at = "failed", None
                    delivery.error = f"not sent: {why}"[:500]
                    continue
                busy[hook.id] = busy.get(hook.id, 0) + 1
                delivery.next_attempt_at = now + lease
                jobs.append(
                    _Job(
                        delivery.id,
                        hook.id,
                        hook.url,
                        hook.secret,
                        delivery.body,
                        delivery.event_type,
                        delivery.created_at,
                    )
                )
        # Turned off in a transaction of their own, the webhook's row before its deliveries
        # (as everywhere): inside the claim, which holds deliveries, two replicas doing it
        # for one webhook would each wait for the other's rows.
        for hook_id in turn_off:
            async with transaction(self._sessions) as db:
                found = await db.get(Webhook, hook_id, with_for_update={"key_share": True})
                if found is not None and found.enabled:
                    standing = await outbox.standing(db, found)  # again: it may be taken over
                    if outbox.turns_off(standing):
                        await disable(db, found.id, now, reason=standing)
        return jobs

    async def _send(self, job: _Job) -> None:
        try:
            try:
                outcome = await self.attempt(job)
            except Exception as err:
                # A failed attempt all the same: the retry policy (and in the end disabling
                # the webhook) applies, not a new try at the end of every lease, forever.
                log.exception("webhook attempt failed unexpectedly", delivery=str(job.delivery_id))
                outcome = Outcome(None, 0, f"internal_error: {type(err).__name__}")
            self._outcomes.append((job, outcome))
            self._outcomes_ready.set()
        finally:
            self._in_flight.pop(job.delivery_id, None)
            self._slot_freed.set()

    async def attempt(self, job: _Job) -> Outcome:
        """POST the delivery once (URL checked again, signed now); never raises."""
        started = time.monotonic()

        def elapsed() -> int:
            return int((time.monotonic() - started) * 1000)

        try:
            secret = self._box.decrypt(
                job.secret_token, table="webhooks", column="secret", row_id=job.webhook_id
            )
            body = job.body.encode()
            stamp = int(self._clock().timestamp())
            async with self._outbound.fetch(
                job.url,
                method="POST",
                body=body,
                headers=signed_headers(secret, str(job.delivery_id), stamp, body),
                max_bytes=MAX_RESPONSE_BYTES,
                timeout_seconds=self._settings.webhook_timeout_seconds,
                max_redirects=0,
            ) as response:
                # Read the (small) answer so that the connection can be used again.
                with contextlib.suppress(ApiError):
                    await response.read()
                return Outcome(response.status, elapsed(), None, _retry_after(response.headers))
        except ApiError as err:
            return Outcome(None, elapsed(), f"{err.code}: {err.message}")
        except EncryptionError as err:
            return Outcome(None, elapsed(), f"the signing secret cannot be read: {err}")

    async def _record_outcomes(self) -> None:
        while True:
            await self._outcomes_ready.wait()
            # Let a batch gather: one transaction for many attempts (on SQLite each write
            # transaction takes the one write lock).
            await asyncio.sleep(RECORD_BATCH_SECONDS)
            self._outcomes_ready.clear()
            await self.flush()

    async def flush(self) -> None:
        """Write every finished attempt not written yet, in one transaction. If that fails,
        the rows stay claimed until their lease ends and are tried again (at least once)."""
        batch, self._outcomes = self._outcomes, []
        if not batch:
            return
        try:
            async with transaction(self._sessions) as db:
                ids = [job.delivery_id for job, _ in batch]
                rows = {
                    d.id: d
                    for d in await db.scalars(
                        select(WebhookDelivery).where(WebhookDelivery.id.in_(ids))
                    )
                }
                for job, outcome in batch:
                    delivery = rows.get(job.delivery_id)
                    # Gone, or failed with its webhook meanwhile: nothing to write.
                    if delivery is not None and delivery.status == "pending":
                        await record_attempt(
                            db,
                            delivery,
                            outcome,
                            now=self._clock(),
                            policy=self._policy,
                            test=job.event_type == TEST_EVENT,
                        )
        except Exception:
            log.exception("webhook outcomes not recorded", deliveries=len(batch))

    async def prune(self) -> None:
        """Delete finished deliveries older than the log's retention (one replica at a time)."""
        async with self._leases.for_run("webhook-prune") as lease:
            if lease is None:
                return
            cutoff = self._clock() - dt.timedelta(days=self._settings.webhook_log_days)
            async with transaction(self._sessions) as db:
                await db.execute(
                    delete(WebhookDelivery).where(
                        WebhookDelivery.status != "pending", WebhookDelivery.created_at < cutoff
                    )
                )

    async def close(self) -> None:
        """Stop sending: finished attempts are written, those still in flight are due again
        at once (for the next process)."""
        unfinished = list(self._in_flight)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.flush()
        if unfinished:
            with contextlib.suppress(Exception):
                async with transaction(self._sessions) as db:
                    await db.execute(
                        update(WebhookDelivery)
                        .where(
                            WebhookDelivery.id.in_(unfinished),
                            WebhookDelivery.status == "pending",
                        )
                        .values(next_attempt_at=self._clock())
                    )


def webhook_dispatcher_ctx(
    guard: WebhookUrlGuard,
) -> Callable[[web.Application], AsyncIterator[None]]:
    """cleanup_ctx: the dispatcher and its HTTP client live exactly as long as the app."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        async with guard.client() as outbound:
            dispatcher = WebhookDispatcher(
                engine=app[ENGINE],
                leases=app[LEASES],
                sessions=app[SESSIONS],
                read_sessions=app[READ_SESSIONS],
                settings=app[SETTINGS],
                box=app[SECRET_BOX],
                outbound=outbound,
            )
            task = asyncio.create_task(dispatcher.run(), name="webhook-dispatcher")
            yield
            await background.stop(task)
            await dispatcher.close()

    return ctx
