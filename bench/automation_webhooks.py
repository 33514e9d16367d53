"""What webhooks cost the control plane (run by bench/automation.py, or alone; ``--only``).

``webhooks``: ``--deliveries`` (10,000) webhook deliveries to a local receiver. In one run it

1. migrates a fresh database (SQLite; PostgreSQL too with ``--postgres URL``, the default
   when STELLAR_TEST_POSTGRES_URL is set), makes one user with ``--webhooks`` account
   webhooks subscribed to ``audit``, and publishes ``deliveries / webhooks`` audited events
   through the domain-event hook, so the outbox subscriber writes the rows, as in production;
2. starts a receiver (this script with ``--serve-receiver PORT``, ``web.run_app``, answering
   204) in a process of its own;
3. baseline: a bare ``aiohttp.ClientSession`` POSTs the same number of bodies to it, as many
   in flight as the dispatcher may have (``STELLAR_WEBHOOK_CONCURRENCY``);
4. starts the control plane through its factory (its cleanup contexts, so its real
   dispatcher: claims, SSRF check of every attempt, signing, the log row of each attempt)
   and times until every row is delivered; the RSS of this process before and after.

It prints figures and ratios and asserts nothing about time.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
from aiohttp import web
from sqlalchemy import func, select

# Run as a script (python bench/x.py), the repository root is not on the path yet.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.databases import create_postgres_database, drop_postgres_database
from bench.processes import Server, free_port, running
from control_plane.app import create_app
from control_plane.db.engine import create_engine, session_factory
from control_plane.db.migrate import upgrade
from control_plane.db.models import WebhookDelivery
from control_plane.db.session import transaction
from control_plane.security.encryption import SecretBox
from control_plane.services import domain_events, users
from control_plane.services.webhooks import manage
from control_plane.settings import load_settings, parse_encryption_keys

ENCRYPTION_KEYS = "b1:" + "7c2e4a6f8b0d1e3f5a7c9e1b3d5f7a9c0e2b4d6f8a1c3e5b7d9f0a2c4e6b8d1f"
RECEIVER_PATH = "/in"
CONCURRENCY = 16


def rss_kib() -> int:
    """This process's resident set size now (Linux)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def serve_receiver(port: int) -> None:
    """The receiver: 204 to every POST, 200 to GET (readiness)."""

    async def accept(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=204)

    async def ready(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post(RECEIVER_PATH, accept)
    app.router.add_get(RECEIVER_PATH, ready)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


async def _baseline(port: int, count: int, body: bytes) -> float:
    """Deliveries/s of a bare client with the dispatcher's concurrency."""
    queue = iter(range(count))
    url = f"http://127.0.0.1:{port}{RECEIVER_PATH}"
    async with aiohttp.ClientSession() as session:

        async def worker() -> None:
            for _ in queue:
                async with session.post(url, data=body) as response:
                    await response.read()

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        return count / (time.perf_counter() - started)


async def _populate(url: str, webhooks: int, events: int, port: int) -> float:
    """Migrate, make the webhooks, publish the events; returns outbox rows written per second."""
    engine = create_engine(url)
    await upgrade(engine)
    factory = session_factory(engine)
    box = SecretBox(parse_encryption_keys(ENCRYPTION_KEYS))
    async with transaction(factory) as db:
        user = await users.create_user(
            db,
            email="bench@example.org",
            password="correct horse battery",
            is_admin=False,
            bcrypt_cost=10,
        )
        owner = manage.Owner("account", user_id=user.id)
        for n in range(webhooks):
            await manage.create_webhook(
                db,
                box,
                owner,
                user.id,
                {
                    "name": f"bench {n}",
                    "url": f"http://receiver.bench:{port}{RECEIVER_PATH}",
                    "events": ["audit"],
                    "format": "standard",
                },
            )
    started = time.perf_counter()
    for first in range(0, events, 100):
        async with transaction(factory) as db:
            for n in range(first, min(first + 100, events)):
                await domain_events.publish(
                    db,
                    domain_events.DomainEvent(
                        "server.console.command",
                        target_type="server",
                        target_id=str(uuid.uuid4()),
                        details={"command": f"say {n}"},
                        actor_id=user.id,
                        actor_email=user.email,
                    ),
                )
    elapsed = time.perf_counter() - started
    await engine.dispose()
    return events * webhooks / elapsed


async def _delivered(url: str) -> tuple[int, float]:
    """How many were delivered, and their mean attempt latency in ms."""
    engine = create_engine(url)
    try:
        async with transaction(session_factory(engine)) as db:
            row = (
                await db.execute(
                    select(func.count(), func.avg(WebhookDelivery.latency_ms)).where(
                        WebhookDelivery.status == "delivered"
                    )
                )
            ).one()
            return int(row[0]), float(row[1] or 0.0)
    finally:
        await engine.dispose()


async def _dispatch(url: str, port: int, total: int) -> tuple[float, int, int]:
    """Run the control plane until every delivery is delivered: (deliveries/s, RSS before,
    RSS after) in KiB."""

    async def names(host: str) -> list[str]:
        return ["127.0.0.1"] if host == "receiver.bench" else []

    settings = load_settings(
        {
            "STELLAR_DATABASE_URL": url,
            "STELLAR_AUTH_SECRET": "q8Jd2LmX7vNp4RtK9wYb3ZcH6gFs1aEu0iOy5TnW",
            "STELLAR_ENCRYPTION_KEYS": ENCRYPTION_KEYS,
            "STELLAR_WEBHOOK_TEST_ALLOW_NETWORKS": "127.0.0.0/8",
            "STELLAR_WEBHOOK_CONCURRENCY": str(CONCURRENCY),
            "STELLAR_WEBHOOK_POLL_SECONDS": "0.05",
        }
    )
    before = rss_kib()
    runner = web.AppRunner(create_app(settings, resolver=names))
    started = time.perf_counter()
    await runner.setup()  # the cleanup contexts: the dispatcher starts here
    engine = create_engine(url)
    try:
        while True:
            async with transaction(session_factory(engine)) as db:
                done = await db.scalar(
                    select(func.count())
                    .select_from(WebhookDelivery)
                    .where(WebhookDelivery.status != "pending")
                )
            if (done or 0) >= total:
                break
            await asyncio.sleep(0.1)
        elapsed = time.perf_counter() - started
        after = rss_kib()
    finally:
        await engine.dispose()
        await runner.cleanup()
    return total / elapsed, before, after


async def webhooks_section(args: argparse.Namespace, root: Path) -> None:
    """``--deliveries`` webhook deliveries to a local receiver: deliveries/s and memory."""
    port = free_port()
    argv = [sys.executable, str(Path(__file__).resolve()), "--serve-receiver", str(port)]
    receiver = Server("receiver", argv, port, RECEIVER_PATH, root / "receiver.log", root)
    webhooks, total = args.webhooks, args.deliveries
    events = total // webhooks
    databases: list[tuple[str, Callable[[], Awaitable[str]]]] = [
        ("sqlite", lambda: _sqlite(root)),
    ]
    if args.postgres:
        databases.append(("postgresql", lambda: create_postgres_database(args.postgres)))
    print(
        f"== webhooks: {events * webhooks} deliveries to {webhooks} webhooks, "
        f"{CONCURRENCY} in flight"
    )
    with running([receiver]):
        baseline = await _baseline(port, events * webhooks, b'{"type":"audit"}' * 20)
        print(f"  bare aiohttp client (baseline):  {baseline:8.0f} requests/s")
        for name, make in databases:
            url = await make()
            try:
                written = await _populate(url, webhooks, events, port)
                rate, before, after = await _dispatch(url, port, events * webhooks)
                delivered, latency = await _delivered(url)
            finally:
                if name == "postgresql":
                    await drop_postgres_database(args.postgres, url)
            print(
                f"  {name}: outbox rows written     {written:8.0f} rows/s "
                "(in the events' transactions)"
            )
            print(
                f"  {name}: dispatcher               {rate:8.0f} deliveries/s "
                f"({rate / baseline:.2f} x baseline), {delivered} delivered, "
                f"{latency:.1f} ms per attempt on average"
            )
            print(
                f"  {name}: RSS before {before / 1024:.1f} MiB, after {after / 1024:.1f} MiB "
                f"(+{(after - before) / 1024:.1f} MiB)"
            )


async def _sqlite(root: Path) -> str:
    return f"sqlite:///{root / f'bench-{uuid.uuid4().hex[:8]}.db'}"


SECTIONS: dict[str, Callable[[argparse.Namespace, Path], Awaitable[None]]] = {
    "webhooks": webhooks_section,
}


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=sorted(SECTIONS), action="append")
    parser.add_argument("--deliveries", type=int, default=10_000)
    parser.add_argument("--webhooks", type=int, default=10)
    parser.add_argument(
        "--postgres",
        default=os.environ.get("STELLAR_TEST_POSTGRES_URL"),
        help="a PostgreSQL URL whose role may CREATE DATABASE (also run there)",
    )
    parser.add_argument("--serve-receiver", type=int, metavar="PORT", help=argparse.SUPPRESS)
    return parser


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="stellar-bench-") as tmp:
        for name in args.only or sorted(SECTIONS):
            await SECTIONS[name](args, Path(tmp))


if __name__ == "__main__":
    arguments = parser().parse_args()
    if arguments.serve_receiver:
        serve_receiver(arguments.serve_receiver)
    else:
        started = dt.datetime.now(dt.UTC)
        asyncio.run(main(arguments))
        print(f"(ran {dt.datetime.now(dt.UTC) - started})")
