"""The background job that sends the outbox: one replica at a time, retries with backoff.

Each pass takes the ``mail-outbox`` lease (``LeaseKeeper.for_run``), reads the due mails in
a short transaction, sends them with no transaction open, then records each outcome; it
sends each only while the lease is still valid (a replica frozen mid-pass loses it within
seconds, another sends the rest, and the frozen one stops when it wakes). Each mail is
claimed just before it is sent (``claimed_until``), for longer than its delivery can take
(:func:`claim_seconds`): the replica that takes over a frozen one's pass leaves the mail
that was under way alone until the claim ends, so it goes out once if the frozen one wakes
within it and finishes it. (Claims are on each replica's clock: keep them in time, NTP.)
A failure is retried after ``STELLAR_MAIL_RETRY_SECONDS`` doubling (with jitter, at most an
hour); a mail still failing a day after it was queued, or refused for good, is given up
(``failed_at``, ``last_error``). Delivery is at least once: a process that dies (or stays
frozen past the claim) between the SMTP server's "250 OK" and the row's update has that
mail sent again.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import random
import uuid
from dataclasses import dataclass
from typing import Final

import structlog
from sqlalchemy import ColumnElement, and_, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from control_plane.db.leases import Lease, LeaseKeeper
from control_plane.db.models import OutboxMail
from control_plane.db.session import transaction
from control_plane.mail.smtp import PermanentFailure, build_message, deliver
from control_plane.settings import ControlPlaneSettings

BATCH: Final = 20
GIVE_UP_AFTER: Final = dt.timedelta(days=1)
MAX_DELAY_SECONDS: Final = 3600.0
# Sent and given-up rows are kept this long (recipient, subject, outcome; bodies emptied).
KEEP: Final = dt.timedelta(days=30)
log = structlog.get_logger("mail")


@dataclass(frozen=True)
class _Due:
    id: uuid.UUID
    to: str
    subject: str
    text: str
    html: str
    attempts: int
    created_at: dt.datetime


# The steps of one delivery, each bounded by the SMTP timeout: connect and greeting, EHLO,
# STARTTLS and EHLO again, AUTH, MAIL, RCPT, DATA, the message, QUIT.
SMTP_STEPS: Final = 10


def claim_seconds(settings: ControlPlaneSettings) -> float:
    """How long a mail stays claimed by the replica sending it: longer than a delivery can
    take (every step at its timeout), plus as much again."""
    return 2 * SMTP_STEPS * settings.smtp_timeout_seconds


def retry_delay(base: float, attempts: int) -> float:
    """Seconds before attempt ``attempts + 1``: ``base`` doubling, ±20 % jitter, ≤ 1 h."""
    delay = min(base * 2 ** max(attempts - 1, 0), MAX_DELAY_SECONDS)
    return float(delay * random.uniform(0.8, 1.2))  # noqa: S311 (spreading, not secrecy)


class MailSender:
    """Sends due mail; ``wake`` (after a request queued one) starts a pass at once."""

    def __init__(
        self,
        settings: ControlPlaneSettings,
        sessions: async_sessionmaker[AsyncSession],
        leases: LeaseKeeper,
    ) -> None:
        self._settings = settings
        self._sessions = sessions
        self._leases = leases
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            try:
                async with self._leases.for_run("mail-outbox") as lease:
                    # A full batch: more may be due; go on while the lease is held.
                    while lease is not None and await self.send_due(lease) == BATCH:
                        pass
            except Exception:
                _unless_stopping()
                log.exception("mail sender pass failed")
            try:
                async with asyncio.timeout(self._settings.mail_poll_seconds):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()

    async def send_due(self, lease: Lease) -> int:
        """One pass over at most BATCH due mails under ``lease``; how many it tried (0 when
        the lease ended before it was done)."""
        now = dt.datetime.now(dt.UTC)
        async with transaction(self._sessions) as db:
            await db.execute(
                delete(OutboxMail).where(
                    or_(OutboxMail.sent_at < now - KEEP, OutboxMail.failed_at < now - KEEP)
                )
            )
            rows = await db.scalars(
                select(OutboxMail)
                .where(
                    _UNSENT,
                    OutboxMail.next_attempt_at <= now,
                    _unclaimed(now),
                )
                .order_by(OutboxMail.next_attempt_at)
                .limit(BATCH)
            )
            due = [
                _Due(r.id, r.to_address, r.subject, r.text_body, r.html_body, r.attempts,
                     r.created_at)
                for r in rows
            ]  # fmt: skip
        for mail in due:
            if not lease.valid():
                log.warning(
                    "mail pass stopped: its lease ended (was this process stopped?);"
                    " another replica sends the rest",
                    left=len(due) - due.index(mail),
                )
                return 0
            claim = await self._claim(mail)
            if claim is None:
                continue  # another replica has it, or it was sent meanwhile
            error: str | None = None
            permanent = False
            try:
                message = build_message(
                    self._settings, to=mail.to, subject=mail.subject, text=mail.text, html=mail.html
                )
                await deliver(self._settings, message)
            except PermanentFailure as err:
                error, permanent = str(err), True
            except asyncio.CancelledError:
                # Stopped (a restart): the mail is not left claimed for minutes.
                await self._release(mail, claim)
                raise
            except Exception as err:  # any failure is retried later
                _unless_stopping()
                error = f"{type(err).__name__}: {err}"
            await self._record(mail, claim, error, permanent=permanent)
        return len(due)

    async def _claim(self, mail: _Due) -> dt.datetime | None:
        """Claim ``mail`` for this replica's delivery: until when, or None if it is not to
        be sent here."""
        now = dt.datetime.now(dt.UTC)
        until = now + dt.timedelta(seconds=claim_seconds(self._settings))
        async with transaction(self._sessions) as db:
            claimed = await db.execute(
                update(OutboxMail)
                .where(OutboxMail.id == mail.id, _UNSENT, _unclaimed(now))
                .values(claimed_until=until)
            )
            return until if claimed.rowcount else None  # type: ignore[attr-defined]

    async def _release(self, mail: _Due, claim: dt.datetime) -> None:
        with contextlib.suppress(Exception):
            async with transaction(self._sessions) as db:
                await db.execute(
                    update(OutboxMail)
                    .where(OutboxMail.id == mail.id, OutboxMail.claimed_until == claim)
                    .values(claimed_until=None)
                )

    async def _record(
        self, mail: _Due, claim: dt.datetime, error: str | None, *, permanent: bool
    ) -> None:
        now = dt.datetime.now(dt.UTC)
        async with transaction(self._sessions) as db:
            row = await db.get(OutboxMail, mail.id)
            if row is None or row.sent_at is not None or row.failed_at is not None:
                return  # done by another replica once this one's claim had ended
            if row.claimed_until == claim:
                row.claimed_until = None
            row.attempts = mail.attempts + 1
            if error is None:
                row.sent_at, row.text_body, row.html_body, row.last_error = now, "", "", None
                log.info("mail sent", kind=row.kind, attempts=row.attempts)
                return
            row.last_error = error[:512]
            if permanent or now - mail.created_at >= GIVE_UP_AFTER:
                row.failed_at, row.text_body, row.html_body = now, "", ""
                log.warning("mail given up", kind=row.kind, error=row.last_error)
                return
            delay = retry_delay(self._settings.mail_retry_seconds, row.attempts)
            row.next_attempt_at = now + dt.timedelta(seconds=delay)
            log.info("mail delivery failed; retrying", kind=row.kind, error=row.last_error,
                     retry_in=round(delay, 1))  # fmt: skip


_UNSENT: Final = and_(OutboxMail.sent_at.is_(None), OutboxMail.failed_at.is_(None))


def _unclaimed(now: dt.datetime) -> ColumnElement[bool]:
    return or_(OutboxMail.claimed_until.is_(None), OutboxMail.claimed_until < now)


def _unless_stopping() -> None:
    """Re-raise the cancellation a library may have turned into an error of its own (a
    connection torn down by it): a sender being stopped never goes on to the next pass."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
