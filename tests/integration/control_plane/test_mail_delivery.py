"""Delivery: an SMTP server that is down or hangs never slows a request, and the mail goes
out once it is back; STARTTLS and implicit TLS against a real server, and no silent
downgrade to clear text when STARTTLS is not offered."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from pytest_aiohttp import AiohttpClient, AiohttpServer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from control_plane.db.engine import create_engine, session_factory
from control_plane.db.leases import EXPIRY_SECONDS, LeaseKeeper
from control_plane.db.models import OutboxMail
from control_plane.db.session import transaction
from control_plane.mail.sender import MailSender, claim_seconds
from control_plane.settings import load_settings
from tests.integration.control_plane.mail_support import mail_environment, mail_panel
from tests.support.panel import Panel
from tests.support.ports import free_port
from tests.support.smtp import MailCatcher, self_signed, silent_server, smtp_server

RESET = "/api/v1/auth/password-reset"


async def _outbox(engine: AsyncEngine) -> list[OutboxMail]:
    async with transaction(session_factory(engine)) as db:
        return list(await db.scalars(select(OutboxMail).order_by(OutboxMail.created_at)))


async def _until(check: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> None:
    """Wait for a database condition the sender brings about (it has no event to await)."""
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.05)


async def _timed_reset(panel: Panel, email: str) -> float:
    browser = await panel.browser()
    started = time.perf_counter()
    await browser.json("POST", RESET, 202, json={"email": email})
    return time.perf_counter() - started


async def test_a_down_or_hanging_smtp_server_never_slows_requests_and_mail_goes_out_later(
    engine: AsyncEngine,
    database_url: str,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
) -> None:
    port = free_port()
    # Each delivery may wait 4 s on a silent server: a request that waited would show it.
    environment = mail_environment(database_url, port, STELLAR_SMTP_TIMEOUT_SECONDS="4")
    catcher = MailCatcher()
    async with mail_panel(environment, aiohttp_server, aiohttp_client) as panel:
        await panel.create_user("first@example.org")
        await panel.create_user("second@example.org")
        # Down: nothing listens.
        assert await _timed_reset(panel, "first@example.org") < 2.0

        async def failed_once() -> bool:
            return any(row.attempts >= 1 and row.last_error for row in await _outbox(engine))

        await _until(failed_once)
        admin = await panel.signed_in("admin@example.org", admin=True)
        status = await admin.json("GET", "/api/v1/mail")
        assert status["queued"] == 1
        assert "ConnectionRefused" in status["last_error"] or "connect" in status["last_error"]
        # Hanging: connections are accepted and never answered.
        async with silent_server(port):
            assert await _timed_reset(panel, "second@example.org") < 2.0
            health = await (await panel.browser()).request("GET", "/healthz")
            assert health.status == 200
        # Back: both mails arrive, once each.
        async with smtp_server(catcher, port=port):
            delivered = {(await catcher.next()).to, (await catcher.next()).to}
            assert delivered == {"first@example.org", "second@example.org"}

            async def all_sent() -> bool:
                return all(row.sent_at is not None for row in await _outbox(engine))

            await _until(all_sent)
            admin = await panel.signed_in("root@example.org", admin=True)
            status = await admin.json("GET", "/api/v1/mail")
            assert status["queued"] == 0
            assert status["enabled"] is True
        rows = await _outbox(engine)
        assert all(row.text_body == "" and row.html_body == "" for row in rows)
        assert rows[0].attempts >= 2
        assert len(catcher.received) == 2


@pytest.mark.parametrize("security", ["starttls", "tls"])
async def test_mail_goes_out_over_starttls_and_implicit_tls(
    engine: AsyncEngine,
    database_url: str,
    tmp_path: Path,
    security: str,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
) -> None:
    context, certificate = self_signed(tmp_path)
    catcher = MailCatcher()
    tls = (
        {"tls_context": context, "require_starttls": True}
        if security == "starttls"
        else {"implicit_tls": context}
    )
    async with smtp_server(catcher, **tls) as port:
        environment = mail_environment(
            database_url,
            port,
            STELLAR_SMTP_SECURITY=security,
            STELLAR_SMTP_CA_FILE=str(certificate),
        )
        async with mail_panel(environment, aiohttp_server, aiohttp_client) as panel:
            await panel.create_user("tls@example.org")
            await (await panel.browser()).json(
                "POST", RESET, 202, json={"email": "tls@example.org"}
            )
            assert (await catcher.next()).to == "tls@example.org"


async def test_starttls_not_offered_is_an_error_not_clear_text(
    engine: AsyncEngine,
    database_url: str,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
) -> None:
    catcher = MailCatcher()
    async with smtp_server(catcher) as port:  # no TLS context: no STARTTLS offered
        environment = mail_environment(database_url, port, STELLAR_SMTP_SECURITY="starttls")
        async with mail_panel(environment, aiohttp_server, aiohttp_client) as panel:
            await panel.create_user("plain@example.org")
            await (await panel.browser()).json(
                "POST", RESET, 202, json={"email": "plain@example.org"}
            )

            async def refused() -> bool:
                rows = await _outbox(engine)
                return bool(rows and rows[0].last_error and "STARTTLS" in rows[0].last_error)

            await _until(refused)
    assert catcher.received == []


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_two_replicas_send_each_mail_once(
    engine: AsyncEngine,
    database_url: str,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
) -> None:
    """Two control planes on one PostgreSQL database, both running the sender: the pass's lease
    lets one of them send at a time, so no mail goes out twice. (SQLite: one control plane
    per database, by design.)"""
    catcher = MailCatcher()
    async with smtp_server(catcher) as port:
        environment = mail_environment(database_url, port, STELLAR_MAIL_POLL_SECONDS="0.05")
        async with (
            mail_panel(environment, aiohttp_server, aiohttp_client) as first,
            mail_panel(environment, aiohttp_server, aiohttp_client) as second,
        ):
            addresses = [f"user{n}@example.org" for n in range(24)]
            for address in addresses:
                await first.create_user(address)
            for n, address in enumerate(addresses):
                panel = (first, second)[n % 2]
                await (await panel.browser()).json("POST", RESET, 202, json={"email": address})
            delivered = [(await catcher.next()).to for _ in addresses]
            assert sorted(delivered) == sorted(addresses)

            async def all_sent() -> bool:
                return all(row.sent_at is not None for row in await _outbox(engine))

            await _until(all_sent)
            # One more through each replica: a duplicate in flight would arrive before them.
            for panel, address in ((first, addresses[0]), (second, addresses[1])):
                await (await panel.browser()).json("POST", RESET, 202, json={"email": address})
            last = {(await catcher.next()).to, (await catcher.next()).to}
            assert last == {addresses[0], addresses[1]}
            assert len(catcher.received) == len(addresses) + 2


async def queue_two_mails(engine: AsyncEngine) -> None:
    """ "mail 1" and "mail 2", due now."""
    async with transaction(session_factory(engine)) as db:
        for n in (1, 2):
            db.add(
                OutboxMail(
                    kind="password_reset",
                    to_address=f"user{n}@example.org",
                    subject=f"mail {n}",
                    text_body="hello",
                    html_body="<p>hello</p>",
                )
            )


async def one_pass(keeper: LeaseKeeper, sender: MailSender) -> int:
    """One mail pass under ``keeper``'s lease (which must be free), as a replica runs it."""
    async with keeper.for_run("mail-outbox") as lease:
        assert lease is not None
        return await sender.send_due(lease)


class StallingCatcher(MailCatcher):
    """Holds the first message's DATA unanswered until ``go_on`` is set (the sender that
    sent it waits there, as one frozen mid-pass would); the others it takes at once."""

    def __init__(self) -> None:
        super().__init__()
        self.stalled = asyncio.Event()
        self.go_on = asyncio.Event()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if not self.stalled.is_set():
            self.stalled.set()
            await self.go_on.wait()
        return await super().handle_DATA(server, session, envelope)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_a_replica_frozen_mid_pass_lets_another_send_the_mail_and_stops_when_it_wakes(
    engine: AsyncEngine, database_url: str
) -> None:
    """The mail pass was a PostgreSQL advisory lock on a connection of its own: a replica
    frozen (SIGSTOP, a paused VM) or cut off in the middle of a pass kept it, and no replica
    sent any mail until it woke up, or for hours until TCP gave up on it. Now a pass holds a
    lease: the frozen one (emulated: its lease session is not renewed while it waits on a
    message the SMTP server holds) loses it within the expiry, the other sends every other
    due mail, and the frozen one, awake, finishes the mail it had claimed and sends nothing
    more of its pass: each mail once."""
    await queue_two_mails(engine)
    catcher = StallingCatcher()
    engines = [create_engine(database_url), create_engine(database_url)]
    frozen, other = LeaseKeeper(engines[0]), LeaseKeeper(engines[1])
    other.start()  # the frozen one's renewal never runs
    try:
        async with smtp_server(catcher) as port:
            settings = load_settings(
                mail_environment(database_url, port, STELLAR_SMTP_TIMEOUT_SECONDS="60")
            )
            frozen_sender = MailSender(settings, session_factory(engines[0]), frozen)

            stuck = asyncio.create_task(one_pass(frozen, frozen_sender))
            await asyncio.wait_for(catcher.stalled.wait(), 10)
            stalled_at = time.monotonic()
            sender = asyncio.create_task(
                MailSender(settings, session_factory(engines[1]), other).run()
            )
            try:
                assert (await catcher.next()).subject == "mail 2"
                taken_over = time.monotonic() - stalled_at
                assert taken_over < EXPIRY_SECONDS + 3, taken_over
                # Mail 1 is the frozen one's, claimed: nobody sends it in its place.
                await asyncio.sleep(1.0)
                assert [delivered.subject for delivered in catcher.received] == ["mail 2"]

                catcher.go_on.set()  # awake: it finishes mail 1, and nothing more of its pass
                assert await asyncio.wait_for(stuck, 10) == 0, "it went on with its pass"

                async def all_sent() -> bool:
                    return all(row.sent_at is not None for row in await _outbox(engine))

                await _until(all_sent)
                await asyncio.sleep(0.5)
                subjects = [delivered.subject for delivered in catcher.received]
                assert sorted(subjects) == ["mail 1", "mail 2"]  # each once
            finally:
                catcher.go_on.set()
                for task in (sender, stuck):
                    task.cancel()
                await asyncio.gather(sender, stuck, return_exceptions=True)
    finally:
        for keeper, each in zip((frozen, other), engines, strict=True):
            await keeper.close()
            await each.dispose()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize("how", ["killed", "stopped"])
async def test_a_mail_whose_sender_died_mid_delivery_goes_out_once_its_claim_ends(
    engine: AsyncEngine, database_url: str, how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other side of the claim: the replica sending mail 1 is killed in the middle of
    its delivery (emulated: its task cancelled and its clean-up gone, so nothing is recorded
    and its claim is left). Another replica sends mail 2 at once, and mail 1 once the claim
    has ended (6 s with a 0.3 s SMTP timeout): at least once, never lost. A replica stopped
    (its task cancelled, as at a restart) lets go of its claim: mail 1 goes out at once."""
    await queue_two_mails(engine)
    catcher = StallingCatcher()
    engines = [create_engine(database_url), create_engine(database_url)]
    killed, other = LeaseKeeper(engines[0]), LeaseKeeper(engines[1])
    other.start()
    try:
        async with smtp_server(catcher) as port:
            settings = load_settings(
                mail_environment(
                    database_url,
                    port,
                    STELLAR_SMTP_TIMEOUT_SECONDS="0.3",
                    STELLAR_MAIL_POLL_SECONDS="0.1",
                )
            )
            claim = claim_seconds(settings)
            killed_sender = MailSender(settings, session_factory(engines[0]), killed)
            if how == "killed":

                async def nothing(*_: object) -> None:
                    return None

                monkeypatch.setattr(killed_sender, "_release", nothing)

            doomed = asyncio.create_task(one_pass(killed, killed_sender))
            await asyncio.wait_for(catcher.stalled.wait(), 10)
            claimed_at = time.monotonic()
            doomed.cancel()
            await asyncio.gather(doomed, return_exceptions=True)
            sender = asyncio.create_task(
                MailSender(settings, session_factory(engines[1]), other).run()
            )
            try:
                first = (await catcher.next()).subject
                if how == "killed":
                    assert first == "mail 2"
                    assert (await asyncio.wait_for(catcher.next(), claim + 10)).subject == "mail 1"
                    assert time.monotonic() - claimed_at >= claim - 1
                else:
                    second = (await asyncio.wait_for(catcher.next(), 5)).subject
                    assert sorted([first, second]) == ["mail 1", "mail 2"]
                await asyncio.sleep(0.5)
                subjects = [delivered.subject for delivered in catcher.received]
                assert sorted(subjects) == ["mail 1", "mail 2"]
            finally:
                catcher.go_on.set()  # the dead connection's DATA, answered at last
                sender.cancel()
                await asyncio.gather(sender, return_exceptions=True)
    finally:
        for keeper, each in zip((killed, other), engines, strict=True):
            await keeper.close()
            await each.dispose()
