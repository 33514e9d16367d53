"""What schedules cost the control plane (run by bench/automation.py, or alone).

Run ``python bench/automation_schedules.py`` (``--help`` for the options). Section ``schedules``:

1. migrates a fresh SQLite file (``--postgres URL``: also a fresh PostgreSQL database) and
   fills it through the services as ``bench/api.py`` does (one user owning ``--schedules``
   servers on one node, a read API key), then gives every server one schedule whose first
   task is a power ``start``;
2. serves it with a real ``python -m control_plane serve`` (scheduler ticking every
   ``--tick`` s) whose node is a **fake, fast node** in this process
   (``tests/support/slow_node.py`` with no delay: it checks every command token as the agent
   does and answers at once). A real agent cannot take this: each start would be a container;
3. measures p50/p99 of ``GET /api/v1/servers`` (API key, ``--concurrency`` in flight) while
   idle, then makes all schedules due in the same minute at once (one UPDATE of
   ``next_run_at``) and measures the same requests until the node has received every
   schedule's first task: the time that took (from the moment they became due; up to one
   tick of it is waiting for the tick) and the p99 ratio busy / idle (target ≤ 2).

It prints figures and asserts nothing about time.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select, update

# Run as a script, the repository root is not on the path yet.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.api import panel_env, panel_server, populate
from bench.databases import create_postgres_database, drop_postgres_database
from bench.load import Run, client_session, get_request
from bench.processes import free_port, percentile, running
from control_plane.db.engine import create_engine, session_factory
from control_plane.db.models import Schedule, ScheduleTask, Server
from control_plane.db.session import transaction
from control_plane.settings import load_settings
from shared.command_keys import write_private_key
from tests.support.slow_node import SlowNode

SERVERS_PATH: Final = "/api/v1/servers?per_page=50"
TARGET_P99_RATIO: Final = 2.0
FAR_FUTURE: Final = dt.datetime(2099, 1, 1, tzinfo=dt.UTC)


@dataclass
class ScheduleFigures:
    label: str
    schedules: int
    sent: int
    seconds_to_all_first_tasks: float
    idle: Run
    busy: Run


async def add_schedules(database_url: str, owner_servers: int) -> None:
    """One schedule per server of the bench user: a power start, not yet due."""
    engine = create_engine(database_url)
    try:
        async with transaction(session_factory(engine)) as db:
            # populate() names the bench user's servers 000…; the other user's comes last.
            other = f"server {owner_servers:03d}"
            servers = list(await db.scalars(select(Server).where(Server.name != other)))
            for server in servers:
                schedule = Schedule(
                    id=uuid.uuid4(),
                    server_id=server.id,
                    creator_id=server.owner_id,
                    name="bench",
                    # Once a year: the burst's runs are the only ones it sees.
                    cron="0 0 1 1 *",
                    next_run_at=FAR_FUTURE,
                )
                db.add(schedule)
                db.add(
                    ScheduleTask(
                        schedule_id=schedule.id,
                        position=0,
                        action="power",
                        payload={"power": "start"},
                    )
                )
    finally:
        await engine.dispose()


async def make_due(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        async with transaction(session_factory(engine)) as db:
            await db.execute(update(Schedule).values(next_run_at=dt.datetime.now(dt.UTC)))
    finally:
        await engine.dispose()


async def measure(
    base_url: str, api_key: str, concurrency: int, until: asyncio.Event | None, seconds: float
) -> Run:
    """GET the server list with ``concurrency`` in flight, for ``seconds`` or until ``until``."""
    run = Run()
    async with client_session(concurrency) as session:
        one = get_request(session, base_url + SERVERS_PATH, {"Authorization": f"Bearer {api_key}"})
        deadline = time.monotonic() + seconds
        start = time.monotonic()

        async def worker() -> None:
            while time.monotonic() < deadline and not (until and until.is_set()):
                await one(run)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        run.wall_seconds = time.monotonic() - start
    return run


async def burst(
    database_url: str, base_url: str, node: SlowNode, node_port: int, args: argparse.Namespace,
    api_key: str, label: str,
) -> ScheduleFigures:  # fmt: skip
    runner = web.AppRunner(node.app())
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", node_port).start()
    try:
        idle = await measure(base_url, api_key, args.concurrency, None, args.idle_seconds)
        done = asyncio.Event()
        await make_due(database_url)
        due_at = time.monotonic()
        load = asyncio.create_task(measure(base_url, api_key, args.concurrency, done, 600))
        while len(node.answered) < args.schedules and time.monotonic() - due_at < 600:
            await asyncio.sleep(0.01)
        elapsed = time.monotonic() - due_at
        done.set()
        busy = await load
    finally:
        await runner.cleanup()
    return ScheduleFigures(label, args.schedules, len(node.answered), elapsed, idle, busy)


def run_schedules(
    label: str, database_url: str, root: Path, args: argparse.Namespace
) -> ScheduleFigures:
    key_file = root / f"signing-{label.lower()}.key"
    signing_key = Ed25519PrivateKey.generate()
    write_private_key(key_file, signing_key)
    env = {
        **panel_env(database_url, free_port(), 10, key_file),
        "STELLAR_SCHEDULE_TICK_SECONDS": str(args.tick),
        "STELLAR_NODE_HEALTH_INTERVAL_SECONDS": "3600",
        "STELLAR_SCHEDULE_CONCURRENCY": str(args.run_concurrency),
    }
    settings = load_settings(env)
    node_port = free_port()
    population = asyncio.run(populate(settings, args.schedules, f"http://127.0.0.1:{node_port}"))
    asyncio.run(add_schedules(database_url, args.schedules))
    node = SlowNode(
        uuid.UUID(population.node_id), signing_key.public_key(), settings.issuer, delay=0
    )
    panel = panel_server(f"control-plane-{label.lower()}", root, env)
    with running([panel]):
        return asyncio.run(
            burst(database_url, panel.base_url, node, node_port, args, population.api_key, label)
        )


def report(figures: ScheduleFigures, tick: float) -> None:
    idle99 = percentile(figures.idle.latencies, 99) / 1000
    busy99 = percentile(figures.busy.latencies, 99) / 1000
    ratio = busy99 / idle99 if idle99 else float("inf")
    verdict = "ok" if ratio <= TARGET_P99_RATIO else "OVER TARGET"
    print(
        f"-- schedules on {figures.label} (node: fake fast node in this process, not a real agent)"
    )
    print(f"   {figures.schedules} schedules due in the same minute; scheduler tick {tick} s")
    print(
        f"   first tasks sent: {figures.sent}/{figures.schedules} after "
        f"{figures.seconds_to_all_first_tasks:.2f} s from becoming due"
    )
    for name, run in (("idle", figures.idle), ("during the burst", figures.busy)):
        print(
            f"   GET /api/v1/servers {name}: {len(run.latencies)} requests, "
            f"p50 {percentile(run.latencies, 50) / 1000:.1f} ms, "
            f"p99 {percentile(run.latencies, 99) / 1000:.1f} ms, errors {run.errors}"
        )
    print(f"   p99 ratio burst / idle: {ratio:.2f} (target <= {TARGET_P99_RATIO}: {verdict})")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--schedules", type=int, default=1000)
    parser.add_argument("--tick", type=float, default=1.0, help="the scheduler's tick, seconds")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--run-concurrency", type=int, default=8, help="runs at once")
    parser.add_argument("--idle-seconds", type=float, default=5.0)
    parser.add_argument("--no-sqlite", action="store_true", help="PostgreSQL only")
    parser.add_argument(
        "--postgres",
        default=os.environ.get("STELLAR_TEST_POSTGRES_URL"),
        help="also on a fresh PostgreSQL database made through this URL (default "
        "$STELLAR_TEST_POSTGRES_URL, else skipped)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    print("== schedules")
    with tempfile.TemporaryDirectory(prefix="stellar-bench-automation-") as tmp:
        root = Path(tmp)
        if not args.no_sqlite:
            sqlite = f"sqlite:///{root / 'bench.db'}"
            report(run_schedules("SQLite", sqlite, root, args), args.tick)
        if args.postgres:
            url = asyncio.run(create_postgres_database(args.postgres))
            try:
                report(run_schedules("PostgreSQL", url, root, args), args.tick)
            finally:
                asyncio.run(drop_postgres_database(args.postgres, url))
    return 0


if __name__ == "__main__":
    sys.exit(main())
