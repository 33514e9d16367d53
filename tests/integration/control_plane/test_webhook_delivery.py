"""The webhook dispatcher against a receiver on loopback: backoff on 500s, disabling after
the retry window, a hung receiver that the API never waits for, and deliveries that outlive
the process that queued them."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
import statistics
import time
import uuid

from pytest_aiohttp import AiohttpClient, AiohttpServer
from sqlalchemy.ext.asyncio import AsyncEngine

from control_plane.db.engine import session_factory
from control_plane.db.models import WebhookDelivery
from control_plane.db.session import transaction
from control_plane.keys import ENGINE
from tests.integration.control_plane.webhook_support import (
    HookPanel,
    deliveries,
    eventually,
    start_panel,
    start_receiver,
    webhook_settings,
)
from tests.support.panel import Browser, Panel
from tests.support.webhook_receiver import Names, Receiver, verify_signature

ACCOUNT = "/api/v1/webhooks"


async def _hooks(
    database_url: str,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
    receiver: Receiver,
    **settings: str,
) -> HookPanel:
    names = Names()
    receiver_server = await start_receiver(receiver, names, aiohttp_server)
    panel = await start_panel(
        webhook_settings(database_url, **settings), names, aiohttp_server, aiohttp_client
    )
    return HookPanel(panel, receiver, receiver_server, names)


async def test_retries_back_off_on_500_and_stop_on_success(
    engine: AsyncEngine,
    database_url: str,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
) -> None:
    receiver = Receiver(statuses=[500, 500, 500])
    hooks = await _hooks(database_url, aiohttp_server, aiohttp_client, receiver)
    alice = await hooks.panel.signed_in("alice@example.org")
    created = await hooks.create(alice, ACCOUNT)
    await alice.login("alice@example.org")
    attempts = await receiver.wait_for(4)
    # One message: the same id on every attempt, each signed afresh.
    assert len({a.headers["webhook-id"] for a in attempts}) == 1
    assert all(verify_signature(created["secret"], a.headers, a.body) for a in attempts)
    gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(attempts)]
    # base 0.2 s doubling, times a factor in [0.5, 1): at least 0.1, 0.2, 0.4 s.
    for number, gap in enumerate(gaps):
        assert gap >= 0.2 * 2**number * 0.5, gaps
    assert gaps[2] > gaps[0], gaps
    path = f"{ACCOUNT}/{created['id']}"
    (row,) = await eventually(
        lambda: deliveries(alice, path), lambda rows: rows[0]["status"] != "pending"
    )
    assert row["status"] == "delivered"
    assert row["attempts"] == 4
    assert row["response_status"] == 200
    # Nothing left to send: no next attempt is scheduled.
    assert row["next_attempt_at"] is None
    assert row["error"] is None


async def test_a_retry_after_that_is_not_a_number_is_ignored_and_the_retries_go_on(
    engine: AsyncEngine,
    database_url: str,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
) -> None:
    """A receiver's ``Retry-After: ²`` (a digit to ``str.isdigit``, not to ``float``) used to
    end the attempt with an exception nobody recorded: the delivery stayed pending with no
    attempt counted, sent again only when its lease ran out, forever, whatever the answer."""
    receiver = Receiver(statuses=[503], headers={"Retry-After": "\u00b2"})
    hooks = await _hooks(database_url, aiohttp_server, aiohttp_client, receiver)
    alice = await hooks.panel.signed_in("alice@example.org")
    created = await hooks.create(alice, ACCOUNT)
    await alice.login("alice@example.org")

    await receiver.wait_for(2)
    (row,) = await eventually(
        lambda: deliveries(alice, f"{ACCOUNT}/{created['id']}"),
        lambda rows: rows[0]["status"] != "pending",
    )
    assert (row["status"], row["attempts"], row["response_status"]) == ("delivered", 2, 200)


async def test_a_webhook_failing_for_the_whole_window_is_disabled_with_a_notice(
    engine: AsyncEngine,
    database_url: str,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
) -> None:
    receiver = Receiver(statuses=[503] * 1000)
    hooks = await _hooks(
        database_url,
        aiohttp_server,
        aiohttp_client,
        receiver,
        STELLAR_WEBHOOK_RETRY_BASE_SECONDS="0.1",
        # Long enough for three tries when the loop stalls a second and a half (a busy CI
        # machine did, and a 1.5 s window saw one).
        STELLAR_WEBHOOK_RETRY_WINDOW_SECONDS="4",
    )
    admin = await hooks.panel.signed_in("root@example.org", admin=True)
    alice = await hooks.panel.signed_in("alice@example.org")
    created = await hooks.create(alice, ACCOUNT)
    path = f"{ACCOUNT}/{created['id']}"
    await alice.login("alice@example.org")
    hook = await eventually(lambda: alice.json("GET", path), lambda h: not h["enabled"])
    assert hook["disabled_reason"].startswith("disabled after deliveries failed")
    assert "HTTP 503" in hook["disabled_reason"]
    assert len(receiver.received) >= 3
    (row,) = await deliveries(alice, path)
    assert row["status"] == "failed"
    assert row["attempts"] == len(receiver.received)
    notice = await admin.json("GET", "/api/v1/audit?action=webhook.disabled")
    assert notice["meta"]["total"] == 1
    assert notice["data"][0]["target_id"] == created["id"]
    # Disabled: new events are not queued, a test is refused until it is turned back on.
    await alice.json("POST", f"{path}/test", status=409)
    turned_on = await alice.json("PATCH", path, json={"enabled": True})
    assert turned_on["disabled_reason"] is None
    receiver.statuses.clear()
    await alice.json("POST", f"{path}/test", status=202)
    await receiver.wait_for(len(receiver.received) + 1)


async def _p50(browser: Browser, samples: int = 40) -> float:
    times = []
    for _ in range(samples):
        started = time.perf_counter()
        await browser.json("GET", "/api/v1/servers")
        times.append(time.perf_counter() - started)
    return statistics.median(times)


async def _queue(panel: Panel, webhook_id: str, count: int) -> None:
    """Pending deliveries, as the outbox subscriber writes them."""
    now = dt.datetime.now(dt.UTC)
    async with transaction(session_factory(panel.server.app[ENGINE])) as db:
        db.add_all(
            WebhookDelivery(
                id=uuid.uuid4(),
                created_at=now,
                webhook_id=uuid.UUID(webhook_id),
                event_type="audit",
                body=json.dumps({"type": "audit", "n": n}),
                status="pending",
                attempts=0,
                next_attempt_at=now,
            )
            for n in range(count)
        )


async def test_a_receiver_that_hangs_does_not_slow_the_server_list(
    engine: AsyncEngine,
    database_url: str,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
) -> None:
    hold = asyncio.Event()
    receiver = Receiver(hold=hold)
    hooks = await _hooks(
        database_url,
        aiohttp_server,
        aiohttp_client,
        receiver,
        STELLAR_WEBHOOK_TIMEOUT_SECONDS="30",
    )
    alice = await hooks.panel.signed_in("alice@example.org")
    created = await hooks.create(alice, ACCOUNT, events=["audit"])
    try:
        idle = await _p50(alice)
        await _queue(hooks.panel, created["id"], 200)
        # Every slot this webhook may use is taken by a request the receiver sits on.
        await receiver.wait_for(4)
        busy = await _p50(alice)
        still_held = len(receiver.received)
    finally:
        hold.set()
    assert still_held == 4, "the dispatcher sent more than its per-webhook share at once"
    # Generous: the list must not wait for webhook attempts (each would take 30 s here).
    assert busy < max(3 * idle, idle + 0.05), (idle, busy)


async def test_deliveries_pending_at_a_restart_are_sent_after_it(
    engine: AsyncEngine,
    database_url: str,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
) -> None:
    hold = asyncio.Event()
    receiver = Receiver(hold=hold)
    names = Names()
    receiver_server = await start_receiver(receiver, names, aiohttp_server)
    settings = webhook_settings(database_url)
    # The first control plane queues two deliveries and starts sending; the receiver sits on
    # the first attempts. It stops with them in flight and the rest queued.
    first = await start_panel(settings, names, aiohttp_server, aiohttp_client)
    hooks = HookPanel(first, receiver, receiver_server, names)
    alice = await first.signed_in("alice@example.org")
    created = await hooks.create(alice, ACCOUNT)
    await alice.login("alice@example.org")
    await alice.login("alice@example.org")
    await receiver.wait_for(2)
    await first.server.close()
    hold.set()  # the old attempts end (their answers reach no one)
    first_ids = {r.headers["webhook-id"] for r in receiver.received}

    # A new control plane on the same database sends them again, and they are delivered.
    second = await start_panel(settings, names, aiohttp_server, aiohttp_client)
    browser = await second.browser()
    await browser.login("alice@example.org")
    rows = await eventually(
        lambda: deliveries(browser, f"{ACCOUNT}/{created['id']}"),
        lambda rows: len(rows) >= 3 and all(r["status"] == "delivered" for r in rows),
    )
    resent = {r["id"] for r in rows} & first_ids
    assert resent == first_ids
    assert all(r["attempts"] == 1 for r in rows)


async def test_two_control_planes_share_the_outbox_and_send_each_delivery_once(
    engine: AsyncEngine,
    database_url: str,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
) -> None:
    receiver = Receiver()
    hooks = await _hooks(database_url, aiohttp_server, aiohttp_client, receiver)
    alice = await hooks.panel.signed_in("alice@example.org")
    created = [await hooks.create(alice, ACCOUNT) for _ in range(4)]
    # A second replica on the same database, with a resolver of its own to count its attempts.
    names = Names({"hooks.test": ["127.0.0.1"]})
    await start_panel(webhook_settings(database_url), names, aiohttp_server, aiohttp_client)
    hooks.names.lookups = 0  # the checks when the webhooks were saved
    for hook in created:
        await _queue(hooks.panel, hook["id"], 100)
    arrived = await receiver.wait_for(400, timeout=60)
    ids = [r.headers["webhook-id"] for r in arrived]
    assert len(set(ids)) == len(ids), "a delivery was sent twice"
    assert names.lookups > 0, "the second replica sent nothing"
    assert hooks.names.lookups > 0, "the first replica sent nothing"
