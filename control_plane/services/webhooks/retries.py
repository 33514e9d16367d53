"""What one attempt's outcome does to its delivery: delivered, retried later, or failed —
and then the webhook disabled.

A 2xx answer delivers. Anything else is retried after ``base * 2**(attempt-1)`` seconds (at
most 4 hours, or the server's Retry-After if longer, at most an hour), times a random factor
in [0.5, 1) so that many failing deliveries do not retry in step. Once the next attempt would
fall past the retry window after the event, the delivery fails, the webhook is disabled with
its reason and the audit row ``webhook.disabled``, and its other pending deliveries fail with
it. Test events are tried once and disable nothing.
"""

from __future__ import annotations

import datetime as dt
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

import structlog
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.models import Webhook, WebhookDelivery
from control_plane.services import audit

log = structlog.get_logger("webhooks")
MAX_RETRY_DELAY: Final = 4 * 3600.0
MAX_RETRY_AFTER: Final = 3600.0


@dataclass(frozen=True)
class Outcome:
    """What one attempt got: the HTTP status (None if none came), time taken, the error."""

    status: int | None
    latency_ms: int
    error: str | None = None
    retry_after: float | None = None

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass(frozen=True)
class RetryPolicy:
    """The first retry's delay and the window retries go on for (settings), and the jitter."""

    base_seconds: float
    window_seconds: float
    jitter: Callable[[], float] = field(default=random.random)

    def delay(self, attempts: int, retry_after: float | None) -> float:
        """Seconds before attempt ``attempts + 1``: exponential, capped, with jitter."""
        exponential = min(self.base_seconds * 2.0 ** (attempts - 1), MAX_RETRY_DELAY)
        delay: float = exponential * (0.5 + self.jitter() / 2)
        if retry_after is not None:
            delay = max(delay, min(retry_after, MAX_RETRY_AFTER))
        return delay


async def record_attempt(
    db: AsyncSession,
    delivery: WebhookDelivery,
    outcome: Outcome,
    *,
    now: dt.datetime,
    policy: RetryPolicy,
    test: bool,
) -> None:
    """Write one attempt into its (pending) delivery and decide what comes next."""
    delivery.attempts += 1
    delivery.last_attempt_at = now
    delivery.response_status = outcome.status
    delivery.latency_ms = outcome.latency_ms
    error = outcome.error or (None if outcome.delivered else f"HTTP {outcome.status}")
    delivery.error = error[:500] if error else None
    if outcome.delivered:
        delivery.status, delivery.delivered_at = "delivered", now
        delivery.next_attempt_at = None
        return
    next_at = now + dt.timedelta(seconds=policy.delay(delivery.attempts, outcome.retry_after))
    if not test and next_at <= delivery.created_at + dt.timedelta(seconds=policy.window_seconds):
        delivery.next_attempt_at = next_at
        return
    delivery.status, delivery.next_attempt_at = "failed", None
    if not test:
        last_error = delivery.error or ""
        reason = f"disabled after deliveries failed for the whole retry window (last: {last_error})"
        await disable(db, delivery.webhook_id, now, reason=reason)


async def turn_off(db: AsyncSession, hook: Webhook, now: dt.datetime, *, reason: str) -> None:
    """Turn ``hook`` off with ``reason`` (shown on it): its pending deliveries fail unsent,
    and none go out if it is turned on again (by someone who takes it over)."""
    hook.enabled, hook.disabled_reason, hook.disabled_at = False, reason[:1000], now
    await db.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.webhook_id == hook.id, WebhookDelivery.status == "pending")
        .values(status="failed", next_attempt_at=None, error="not sent: the webhook was disabled")
    )
    log.warning("webhook disabled", webhook=str(hook.id), reason=reason)


async def disable(
    db: AsyncSession, webhook_id: uuid.UUID, now: dt.datetime, *, reason: str
) -> None:
    """Turn a webhook off (:func:`turn_off`), recorded in the audit trail: after its
    deliveries failed for the whole retry window, or when the dispatcher finds that the user
    it sends for may no longer see what it sends."""
    hook = await db.get(Webhook, webhook_id)
    if hook is None or not hook.enabled:
        return
    await turn_off(db, hook, now, reason=reason)
    await audit.append(
        db,
        None,
        audit.AuditEvent(
            "webhook.disabled",
            target_type="webhook",
            target_id=str(webhook_id),
            details={
                "scope": hook.scope,
                "server": str(hook.server_id) if hook.server_id else None,
                "user": str(hook.user_id) if hook.user_id else None,
                "reason": reason,
            },
        ),
    )
