"""What the control plane's API costs: an authenticated list, and latency while bcrypt runs.

Run ``python bench/api.py`` (``--help`` for the options). In one run it

1. migrates a fresh SQLite file and fills it in this process through the services: one
   user (bcrypt at ``--bcrypt-cost``), one node, ``--servers`` servers owned by that user
   (``services.servers.create_server``, as ``tests/support/world.py`` does) and one
   read-scoped API key; then starts a real ``python -m control_plane serve`` on it (rate
   limits raised so that nothing is throttled) and signs in once through the API for a
   session cookie;
2. (a) measures requests/s and p50/p99 latency of ``GET /api/v1/servers`` (all
   ``--servers`` on the first page) authenticated by API key (``Authorization: Bearer``)
   and by session cookie, and of the Pterodactyl-compatible ``GET /api/client`` (the same
   servers, a ``ptlc_`` client key), against a bare aiohttp hello-world (this same script with
   ``--serve-hello PORT``, ``web.run_app`` on asyncio's loop: the target's baseline), each
   with one keep-alive ``aiohttp.ClientSession`` and ``--concurrency`` requests in flight, in
   alternating time-boxed blocks so that machine noise falls on all of them alike. The
   control plane serves on uvloop (``shared/http_server.py``), so the same hello-world on
   uvloop is measured beside it, and the list's ratio against that is printed too;
3. (b) measures p50/p99 of cheap requests sent one at a time (``GET /healthz``, and
   ``GET /api/v1/auth/session`` with the cookie) with no sign-ins running, and while
   ``--logins`` clients sign in with the right password in a loop, alternating the two
   phases. Password checks run bcrypt in worker threads; if they ran on the event loop,
   every cheap request would wait for whole bcrypt computations.
4. (c) measures p50/p99 of one user's writes (renaming a server, creating an API key) sent
   one at a time while no node call is under way, and while another user's power action
   waits on a node that takes ``--slow-node-seconds`` to answer (``tests/support/
   slow_node.py``: it checks each command token like the agent and sits on it), alternating
   the two phases. A route that held a database transaction while the node answered would
   hold every writer for that long on SQLite.

With ``--postgres URL`` (a database through which the role may ``CREATE DATABASE``, like
the test suite's ``STELLAR_TEST_POSTGRES_URL``, the default when set), (a) and (b) are
repeated against a second control plane on a fresh PostgreSQL database, created for the
run and dropped after it. On SQLite, reads (the caller's lookup, the list's one statement) run
outside any transaction on read-only connections in worker threads, and writers queue for the
one write lock (``BEGIN IMMEDIATE``); PostgreSQL runs writers side by side.

The control plane logs one JSON line per request to a file, as it goes to journald in
production; the hello-world logs nothing. It prints figures and asserts nothing about time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import secrets
import signal
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Final

import aiohttp
import uvloop
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

# Run as a script (python bench/x.py), the repository root is not on the path yet.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sqlalchemy import delete

from bench.databases import create_postgres_database, drop_postgres_database
from bench.load import Request, Run, alternate, client_session, get_request
from bench.processes import (
    Server,
    free_port,
    percentile,
    running,
    us_since,
)
from control_plane import cli_ops
from control_plane.db.engine import create_engine, session_factory
from control_plane.db.models import Allocation, ApiKey, Blueprint, ListingVersion, Node
from control_plane.db.models import Server as ServerRow
from control_plane.db.session import transaction
from control_plane.security.api_keys import new_key
from control_plane.security.sessions import cookie_name
from control_plane.services import users as user_service
from control_plane.services.servers import placement
from control_plane.settings import ControlPlaneSettings, load_settings
from shared.command_keys import write_private_key
from tests.support.slow_node import SlowNode

HELLO_PATH: Final = "/hello"
SERVERS_PATH: Final = "/api/v1/servers"
COMPAT_SERVERS_PATH: Final = "/api/client"
HEALTH_PATH: Final = "/healthz"
SESSION_PATH: Final = "/api/v1/auth/session"
LOGIN_PATH: Final = "/api/v1/auth/login"
EMAIL: Final = "bench@example.org"
OTHER_EMAIL: Final = "other@example.org"
PASSWORD: Final = "correct horse battery staple"
MAX_PAGE: Final = 100  # PageQuery.per_page's limit
RATE_LIMITS: Final = (
    "api=1000000/60,authentication=1000000/60,sign_in_account=1000000/60,power=1000000/60"
)
REQUEST_TIMEOUT_SECONDS: Final = 30.0
TARGET_THROUGHPUT_RATIO: Final = 0.30
TARGET_P99_RATIO: Final = 2.0
# The Pterodactyl-compatible list against ours (docs/pterodactyl-compat.md).
TARGET_COMPAT_RATIO: Final = 0.8
OUR_VARIABLES: Final = ("STELLAR_", "REDIS_URL", "DATABASE_URL")

Sample = list[float]  # microseconds


# --------------------------------------------------------------------------- statistics


# --------------------------------------------------------------------------- hello-world server


def serve_hello(port: int, loop: str) -> None:
    """The baseline: one bare aiohttp route answering a small JSON body, on asyncio's loop
    (as ``web.run_app`` serves) or on uvloop's (as the control plane serves)."""

    async def hello(_request: web.Request) -> web.Response:
        return web.json_response({"hello": "world"})

    app = web.Application()
    app.router.add_get(HELLO_PATH, hello)
    web.run_app(
        app,
        host="127.0.0.1",
        port=port,
        print=None,
        access_log=None,
        loop=uvloop.new_event_loop() if loop == "uvloop" else None,
    )


# --------------------------------------------------------------------------- subprocesses


def base_env() -> dict[str, str]:
    """This process's environment without any control-plane setting it may carry."""
    return {k: v for k, v in os.environ.items() if not k.startswith(OUR_VARIABLES)}


def panel_env(database_url: str, port: int, bcrypt_cost: int, key_file: Path) -> dict[str, str]:
    # bench/processes.py puts this checkout first on the servers' PYTHONPATH.
    return {
        **base_env(),
        "STELLAR_ENV": "development",
        "STELLAR_DATABASE_URL": database_url,
        "STELLAR_AUTH_SECRET": secrets.token_urlsafe(48),
        "STELLAR_BCRYPT_COST": str(bcrypt_cost),
        "STELLAR_RATE_LIMITS": RATE_LIMITS,
        "STELLAR_HOST": "127.0.0.1",
        "STELLAR_PORT": str(port),
        "STELLAR_SIGNING_KEY_FILE": str(key_file),
        "STELLAR_NODE_TIMEOUT_SECONDS": "120",
    }


def panel_server(name: str, root: Path, env: dict[str, str]) -> Server:
    argv = [sys.executable, "-m", "control_plane", "serve"]
    port = int(env["STELLAR_PORT"])
    return Server(name, argv, port, HEALTH_PATH, root / f"{name}.log", root, env)


def hello_server(root: Path, loop: str = "asyncio") -> Server:
    port = free_port()
    script = str(Path(__file__).resolve())
    argv = [sys.executable, script, "--serve-hello", str(port), "--hello-loop", loop]
    name = f"hello-{loop}"
    return Server(name, argv, port, HELLO_PATH, root / f"{name}.log", root, base_env())


# --------------------------------------------------------------------------- the database


@dataclass(frozen=True)
class Population:
    """What ``populate`` made: the bench user's read key; the node; the other user's write
    key and server (for the slow power action of (c))."""

    api_key: str
    node_id: str
    other_key: str
    other_server: str
    first_server: str
    client_key: str


async def populate(
    settings: ControlPlaneSettings, servers: int, node_url: str, *, uncached: bool = False
) -> Population:
    """Migrate, then one user owning ``servers`` servers and a read key, and another user
    with one server and a write key, all on one node at ``node_url`` (``uncached``: with the
    lists' version row removed, so that no list is kept)."""
    await cli_ops.migrate(settings)
    engine = create_engine(settings.database_url or "")
    try:
        async with transaction(session_factory(engine)) as db:
            user = await user_service.create_user(
                db,
                email=EMAIL,
                password=PASSWORD,
                is_admin=False,
                bcrypt_cost=settings.bcrypt_cost,
            )
            other = await user_service.create_user(
                db,
                email=OTHER_EMAIL,
                password=PASSWORD,
                is_admin=False,
                bcrypt_cost=settings.bcrypt_cost,
            )
            node = Node(name="bench-node", url=node_url, memory_mib=0, disk_mib=0)
            db.add(node)
            await db.flush()
            db.add_all(
                Allocation(node_id=node.id, ip="127.0.0.1", port=30000 + i)
                for i in range(servers + 1)
            )
            blueprint = Blueprint(
                name="bench game",
                description="",
                images=[{"name": "default", "image": "stellar-bench/game:latest"}],
                startup="/usr/local/bin/game --port {{SERVER_PORT}}",
                stop={"type": "command", "value": "stop"},
                install=None,
                variables=[],
                read_only_root=True,
                file_denylist=[],
            )
            db.add(blueprint)
            await db.flush()
            limits = placement.ServerLimits(512, 0, 100, 1024, 256)
            made: list[ServerRow] = []
            for i, owner in enumerate([user] * servers + [other]):
                server = await placement.create_server(
                    db,
                    name=f"server {i:03d}",
                    owner=owner,
                    blueprint=blueprint,
                    node_id=node.id,
                    image=None,
                    limits=limits,
                    variables={},
                )
                server.state = "offline"
                made.append(server)
            keys = {}
            for name, owner, scopes, kind in (
                (EMAIL, user, ["read"], "stellar"),
                (OTHER_EMAIL, other, ["write"], "stellar"),
                ("client", user, ["read"], "client"),
            ):
                full, prefix, secret_hash = new_key(kind)
                keys[name] = full
                db.add(
                    ApiKey(
                        user_id=owner.id,
                        name="bench",
                        prefix=prefix,
                        secret_hash=secret_hash,
                        scopes=scopes,
                        allowed_ips=[],
                        kind=kind,
                    )
                )
            population = Population(
                api_key=keys[EMAIL],
                node_id=str(node.id),
                other_key=keys[OTHER_EMAIL],
                other_server=str(made[-1].id),
                first_server=str(made[0].id),
                client_key=keys["client"],
            )
        if uncached:
            # Without the lists' version nothing is kept: every list is read anew, as on a
            # busy fleet whose state changes keep changing the version.
            async with transaction(session_factory(engine)) as db:
                await db.execute(delete(ListingVersion))
    finally:
        await engine.dispose()
    return population


# --------------------------------------------------------------------------- load


async def sign_in(session: aiohttp.ClientSession, base_url: str) -> tuple[str, str]:
    """POST the password and return the session cookie's value and its CSRF token."""
    async with session.post(
        base_url + LOGIN_PATH, json={"email": EMAIL, "password": PASSWORD}
    ) as response:
        body: Any = await response.json()
        if response.status != 200:
            raise RuntimeError(f"login answered {response.status}: {body}")
        morsel = response.cookies.get(cookie_name(False))
        if morsel is None:
            raise RuntimeError("login set no session cookie")
        return morsel.value, str(body["csrf_token"])


async def check_listing(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str], expected: int
) -> None:
    """The listing must hold every server, or the benchmark measures something else."""
    async with session.get(url, headers=headers) as response:
        body: Any = await response.json()
        if response.status != 200:
            raise RuntimeError(f"GET {url} answered {response.status}: {body}")
    meta = body["meta"]
    total = meta["pagination"]["total"] if "pagination" in meta else meta["total"]
    if len(body["data"]) != expected or total != expected:
        raise RuntimeError(f"the page holds {len(body['data'])} of {total} servers, not {expected}")


@dataclass
class Listing:
    api_key: Run
    cookie: Run
    hello: Run
    compat: Run
    # GET /healthz through every middleware with no credential: the stack's fixed cost.
    health: Run
    # The same hello-world on uvloop, the control plane's loop.
    hello_uvloop: Run
    servers_listed: int


async def bench_listing(
    panel: Server,
    hellos: tuple[Server, Server],
    population: Population,
    cookie: str,
    args: argparse.Namespace,
) -> Listing:
    url = f"{panel.base_url}{SERVERS_PATH}?per_page={args.servers}"
    compat_url = f"{panel.base_url}{COMPAT_SERVERS_PATH}?per_page={args.servers}"
    by_key = {"Authorization": f"Bearer {population.api_key}"}
    by_cookie = {"Cookie": f"{cookie_name(False)}={cookie}"}
    by_client_key = {"Authorization": f"Bearer {population.client_key}"}
    async with (
        client_session(args.concurrency) as key_session,
        client_session(args.concurrency) as cookie_session,
        client_session(args.concurrency) as hello_session,
        client_session(args.concurrency) as compat_session,
        client_session(args.concurrency) as health_session,
        client_session(args.concurrency) as uvloop_hello_session,
    ):
        hello, hello_uvloop = hellos
        await check_listing(key_session, url, by_key, args.servers)
        await check_listing(cookie_session, url, by_cookie, args.servers)
        await check_listing(compat_session, compat_url, by_client_key, args.servers)
        targets = [
            get_request(key_session, url, by_key),
            get_request(cookie_session, url, by_cookie),
            get_request(hello_session, hello.base_url + HELLO_PATH),
            get_request(compat_session, compat_url, by_client_key),
            get_request(health_session, f"{panel.base_url}/healthz"),
            get_request(uvloop_hello_session, hello_uvloop.base_url + HELLO_PATH),
        ]
        await alternate(targets, 0.5 * len(targets), args.concurrency, 1)  # warm-up
        panel_pid = panel.process.pid if panel.process else None
        hello_pid = hello.process.pid if hello.process else None
        uvloop_pid = hello_uvloop.process.pid if hello_uvloop.process else None
        key, by_cookie_run, hello_run, compat, health, uvloop_run = await alternate(
            targets,
            args.seconds,
            args.concurrency,
            args.rounds,
            pids=[panel_pid, panel_pid, hello_pid, panel_pid, panel_pid, uvloop_pid],
        )
    return Listing(key, by_cookie_run, hello_run, compat, health, uvloop_run, args.servers)


@dataclass
class Probes:
    """Cheap requests one at a time, with and without sign-ins running; the sign-ins."""

    health_idle: Run = field(default_factory=Run)
    health_busy: Run = field(default_factory=Run)
    session_idle: Run = field(default_factory=Run)
    session_busy: Run = field(default_factory=Run)
    logins: Run = field(default_factory=Run)


async def probe(
    health: Request, session: Request, probes: Probes, *, busy: bool, seconds: float
) -> None:
    health_run = probes.health_busy if busy else probes.health_idle
    session_run = probes.session_busy if busy else probes.session_idle
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        await health(health_run)
        await session(session_run)
    elapsed = time.perf_counter() - start
    health_run.wall_seconds += elapsed
    session_run.wall_seconds += elapsed


def login_request(session: aiohttp.ClientSession, base_url: str) -> Request:
    url = base_url + LOGIN_PATH
    payload = {"email": EMAIL, "password": PASSWORD}

    async def one(run: Run) -> None:
        start = time.perf_counter_ns()
        async with session.post(url, json=payload) as response:
            body = await response.read()
        run.latencies.append(us_since(start))
        if response.status != 200:
            run.failed(f"POST {url} answered {response.status}: {body[:200]!r}")

    return one


async def bench_logins(panel: Server, cookie: str, args: argparse.Namespace) -> Probes:
    probes = Probes()
    by_cookie = {"Cookie": f"{cookie_name(False)}={cookie}"}
    async with client_session(1) as probe_session, client_session(args.logins) as login_session:
        health = get_request(probe_session, panel.base_url + HEALTH_PATH)
        session = get_request(probe_session, panel.base_url + SESSION_PATH, by_cookie)
        login = login_request(login_session, panel.base_url)
        await probe(health, session, Probes(), busy=False, seconds=0.5)  # warm-up
        share = args.probe_seconds / args.probe_rounds

        async def login_loop(stop: asyncio.Event) -> None:
            while not stop.is_set():
                await login(probes.logins)

        for turn in range(args.probe_rounds):
            # idle, busy, busy, idle, ...: drift falls on both phases alike.
            for busy in (False, True) if turn % 2 == 0 else (True, False):
                if not busy:
                    await probe(health, session, probes, busy=False, seconds=share)
                    continue
                stop = asyncio.Event()
                started = time.perf_counter()
                loops = [asyncio.create_task(login_loop(stop)) for _ in range(args.logins)]
                try:
                    # Let every client's first password check start before probing.
                    await asyncio.sleep(0.2)
                    await probe(health, session, probes, busy=True, seconds=share)
                finally:
                    stop.set()
                    await asyncio.gather(*loops)
                probes.logins.wall_seconds += time.perf_counter() - started
    return probes


@dataclass
class SlowNodeWrites:
    """One user's writes, with no node call under way and while another's waits on a node."""

    idle: Run = field(default_factory=Run)
    busy: Run = field(default_factory=Run)
    slow_calls: int = 0
    slow_seconds: float = 0.0


async def bench_slow_node(
    panel: Server,
    node: SlowNode,
    node_port: int,
    cookie: str,
    csrf: str,
    population: Population,
    args: argparse.Namespace,
) -> SlowNodeWrites:
    result = SlowNodeWrites()
    runner = web.AppRunner(node.app())
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", node_port).start()
    writer_headers = {"Cookie": f"{cookie_name(False)}={cookie}", "X-CSRF-Token": csrf}
    other_headers = {"Authorization": f"Bearer {population.other_key}"}
    rename_url = f"{panel.base_url}{SERVERS_PATH}/{population.first_server}"
    keys_url = f"{panel.base_url}/api/v1/account/api-keys"
    power_url = f"{panel.base_url}{SERVERS_PATH}/{population.other_server}/power"
    try:
        async with client_session(1) as writes, client_session(1) as powers:

            async def write(run: Run, n: int) -> None:
                for method, url, payload, expect in (
                    ("PATCH", rename_url, {"name": f"server {n}"}, 200),
                    ("POST", keys_url, {"name": f"k{n}", "scopes": ["read"]}, 201),
                ):
                    start = time.perf_counter_ns()
                    async with writes.request(
                        method, url, json=payload, headers=writer_headers
                    ) as response:
                        body = await response.read()
                    run.latencies.append(us_since(start))
                    if response.status != expect:
                        run.failed(f"{method} {url} answered {response.status}: {body[:200]!r}")

            async def slow_power() -> None:
                started = time.perf_counter()
                async with powers.post(
                    power_url, json={"action": "start"}, headers=other_headers
                ) as response:
                    body = await response.read()
                result.slow_seconds += time.perf_counter() - started
                result.slow_calls += 1
                if response.status != 202:
                    raise RuntimeError(
                        f"the slow power action answered {response.status}: {body!r}"
                    )

            counter = 0
            for turn in range(args.slow_rounds):
                for busy in (False, True) if turn % 2 == 0 else (True, False):
                    call = asyncio.create_task(slow_power()) if busy else None
                    while call is not None and node.waiting == 0:
                        await asyncio.sleep(0.005)
                    for _ in range(args.slow_writes):
                        counter += 1
                        await write(result.busy if busy else result.idle, counter)
                    if call is not None:
                        if node.waiting == 0:
                            raise RuntimeError("the writes outlasted the slow node's answer")
                        await call
    finally:
        await runner.cleanup()
    return result


# --------------------------------------------------------------------------- report


def slow_node_rows(label: str, writes: SlowNodeWrites, delay: float) -> float:
    idle, busy = writes.idle, writes.busy
    ratio = percentile(busy.latencies, 99) / percentile(idle.latencies, 99)
    print(
        f"(c) {label}: one user's writes (rename a server, create an API key) one at a time,"
        f" idle vs while another user's power action waits {delay:.0f} s on its node;"
        f" latency in ms"
    )
    print(
        f"  {'':<34} {'n idle':>7} {'p50':>8} {'p99':>8} {'n busy':>7} {'p50':>8} {'p99':>8}"
        f" {'errors':>7} {'p99 x':>7}"
    )
    print(
        f"  {'writes':<34} {len(idle.latencies):>7} {ms(statistics.median(idle.latencies)):>8}"
        f" {ms(percentile(idle.latencies, 99)):>8} {len(busy.latencies):>7}"
        f" {ms(statistics.median(busy.latencies)):>8} {ms(percentile(busy.latencies, 99)):>8}"
        f" {idle.errors + busy.errors:>7} {ratio:>7.2f}"
    )
    print(
        f"  slow power actions: {writes.slow_calls}, each answered after"
        f" {writes.slow_seconds / max(writes.slow_calls, 1):.1f} s"
    )
    for run in (idle, busy):
        if run.first_error:
            print(f"  first error: {run.first_error}")
    return ratio


def ms(value: float) -> str:
    return f"{value / 1000:.2f}"


def listing_rows(label: str, listing: Listing, concurrency: int) -> dict[str, float]:
    print(
        f"(a) {label}: GET {SERVERS_PATH} ({listing.servers_listed} servers on the page),"
        f" {concurrency} in flight, keep-alive; latency in ms"
    )
    print(
        f"  {'':<34} {'requests':>9} {'errors':>7} {'req/s':>8} {'p50':>8} {'p99':>8} {'/hello':>7}"
        f" {'CPU us':>7} {'/hello':>7}"
    )
    hello = listing.hello.per_second
    hello_cpu = listing.hello.cpu_us_per_request
    ratios: dict[str, float] = {}
    for name, run in (
        ("control plane, API key (Bearer)", listing.api_key),
        ("control plane, session cookie", listing.cookie),
        ("bare aiohttp hello-world", listing.hello),
        (f"Pterodactyl GET {COMPAT_SERVERS_PATH} (ptlc_)", listing.compat),
        ("control plane, GET /healthz", listing.health),
        ("bare aiohttp hello-world, uvloop", listing.hello_uvloop),
    ):
        ratio = run.per_second / hello if hello else 0.0
        ratios[name] = ratio
        print(
            f"  {name:<34} {len(run.latencies):>9} {run.errors:>7} {run.per_second:>8.0f}"
            f" {ms(statistics.median(run.latencies)):>8} {ms(percentile(run.latencies, 99)):>8}"
            f" {ratio:>7.3f} {run.cpu_us_per_request:>7.0f}"
            f" {hello_cpu / run.cpu_us_per_request if run.cpu_us_per_request else 0.0:>7.3f}"
        )
    print(
        "  CPU us: the serving process's CPU time per request (its threads included; not"
        " PostgreSQL's); /hello: the hello-world's over it, the throughput ratio an idle machine"
        " with a core per process would show; /healthz: no credential, no database, every"
        " middleware (the stack's fixed cost); the control plane serves on uvloop, the"
        " hello-world (the baseline) on asyncio's loop as web.run_app does, and on uvloop"
        " in the last row"
    )
    return ratios


def probe_rows(label: str, probes: Probes, logins: int) -> dict[str, float]:
    signed = probes.logins
    rate = (len(signed.latencies) - signed.errors) / signed.wall_seconds
    print(
        f"(b) {label}: cheap requests one at a time, idle vs {logins} clients signing in"
        f" in a loop; latency in ms"
    )
    print(
        f"  {'':<34} {'n idle':>7} {'p50':>8} {'p99':>8} {'n busy':>7} {'p50':>8} {'p99':>8}"
        f" {'errors':>7} {'p99 x':>7}"
    )
    ratios: dict[str, float] = {}
    for name, idle, busy in (
        (f"GET {HEALTH_PATH}", probes.health_idle, probes.health_busy),
        (f"GET {SESSION_PATH} (cookie)", probes.session_idle, probes.session_busy),
    ):
        ratio = percentile(busy.latencies, 99) / percentile(idle.latencies, 99)
        ratios[name] = ratio
        print(
            f"  {name:<34} {len(idle.latencies):>7} {ms(statistics.median(idle.latencies)):>8}"
            f" {ms(percentile(idle.latencies, 99)):>8} {len(busy.latencies):>7}"
            f" {ms(statistics.median(busy.latencies)):>8} {ms(percentile(busy.latencies, 99)):>8}"
            f" {idle.errors + busy.errors:>7} {ratio:>7.2f}"
        )
    print(
        f"  sign-ins: {len(signed.latencies)} ({signed.errors} failed), {rate:.1f}/s succeeded,"
        f" p50 {ms(statistics.median(signed.latencies))} ms,"
        f" p99 {ms(percentile(signed.latencies, 99))} ms"
    )
    for run in (signed, probes.health_busy, probes.session_busy, probes.health_idle):
        if run.first_error:
            print(f"  first error: {run.first_error}")
    return ratios


def verdict(ratio: float, target: float, *, at_least: bool) -> str:
    met = ratio >= target if at_least else ratio <= target
    return "met" if met else "NOT met"


# --------------------------------------------------------------------------- main


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0] if __doc__ else None,
        epilog="PostgreSQL: pass --postgres URL (or set STELLAR_TEST_POSTGRES_URL); "
        "--postgres '' skips it.",
    )
    parser.add_argument(
        "--servers",
        type=int,
        default=50,
        help="servers owned by the caller, all listed on one page (default 50, at most 100)",
    )
    parser.add_argument(
        "--concurrency", type=int, default=8, help="requests in flight in (a) (default 8)"
    )
    parser.add_argument(
        "--seconds", type=float, default=4.0, help="measured seconds per target in (a) (default 4)"
    )
    parser.add_argument(
        "--rounds", type=int, default=4, help="alternating blocks per target in (a) (default 4)"
    )
    parser.add_argument(
        "--probe-seconds",
        type=float,
        default=5.0,
        help="measured seconds per phase (idle, signing in) in (b) (default 5)",
    )
    parser.add_argument(
        "--probe-rounds",
        type=int,
        default=2,
        help="alternating blocks per phase in (b) (default 2); each signing-in block ends by"
        " waiting for the sign-ins in flight",
    )
    parser.add_argument(
        "--logins", type=int, default=8, help="clients signing in concurrently in (b) (default 8)"
    )
    parser.add_argument(
        "--bcrypt-cost", type=int, default=12, help="STELLAR_BCRYPT_COST (default 12)"
    )
    parser.add_argument(
        "--slow-node-seconds",
        type=float,
        default=10.0,
        help="how long the slow node of (c) takes to answer a power action (default 10)",
    )
    parser.add_argument(
        "--slow-rounds", type=int, default=2, help="alternating blocks per phase in (c) (default 2)"
    )
    parser.add_argument(
        "--slow-writes",
        type=int,
        default=20,
        help="writes (x2 requests) per block in (c) (default 20)",
    )
    parser.add_argument(
        "--postgres",
        metavar="URL",
        default=os.environ.get("STELLAR_TEST_POSTGRES_URL", ""),
        help="also run (b) on a fresh database created (and dropped) through this PostgreSQL"
        " URL (default $STELLAR_TEST_POSTGRES_URL, else skipped)",
    )
    parser.add_argument(
        "--parts",
        default="abc",
        help="which measurements to run, any of a, b and c (default abc; 'a' alone measures"
        " the lists, as when comparing an optimisation)",
    )
    parser.add_argument(
        "--uncached",
        action="store_true",
        help="measure lists read anew on every request (the lists' version row removed: no"
        " list is kept), as on a busy fleet where state changes keep emptying the kept lists",
    )
    parser.add_argument("--serve-hello", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument(
        "--hello-loop", choices=("asyncio", "uvloop"), default="asyncio", help=argparse.SUPPRESS
    )
    return parser


def _terminate(signum: int, _frame: FrameType | None) -> None:
    # Turn SIGTERM into an exception so that the servers are stopped on the way out.
    raise SystemExit(128 + signum)


async def _sign_in_once(panel: Server) -> tuple[str, str]:
    async with client_session(1) as session:
        return await sign_in(session, panel.base_url)


@dataclass
class Result:
    label: str
    listing: Listing | None
    probes: Probes | None
    slow_node: SlowNodeWrites | None


def run_backend(
    label: str,
    database_url: str,
    root: Path,
    hellos: tuple[Server, Server],
    args: argparse.Namespace,
) -> Result:
    """Populate the database, serve it, and run (a), (b) and (c) against it."""
    key_file = root / f"signing-{label.lower()}.key"
    signing_key = Ed25519PrivateKey.generate()
    write_private_key(key_file, signing_key)
    env = panel_env(database_url, free_port(), args.bcrypt_cost, key_file)
    settings = load_settings(env)
    node_port = free_port()
    population = asyncio.run(
        populate(settings, args.servers, f"http://127.0.0.1:{node_port}", uncached=args.uncached)
    )
    node = SlowNode(
        uuid.UUID(population.node_id),
        signing_key.public_key(),
        settings.issuer,
        delay=args.slow_node_seconds,
    )
    panel = panel_server(f"control-plane-{label.lower()}", root, env)
    with running([panel]):
        cookie, csrf = asyncio.run(_sign_in_once(panel))
        listing = probes = slow = None
        if "a" in args.parts:
            listing = asyncio.run(bench_listing(panel, hellos, population, cookie, args))
        if "b" in args.parts:
            probes = asyncio.run(bench_logins(panel, cookie, args))
        if "c" in args.parts:
            slow = asyncio.run(
                bench_slow_node(panel, node, node_port, cookie, csrf, population, args)
            )
    return Result(label, listing, probes, slow)


def run_postgres(
    root: Path, hellos: tuple[Server, Server], args: argparse.Namespace
) -> Result | None:
    try:
        url = asyncio.run(create_postgres_database(args.postgres))
    except (OSError, ImportError) as err:
        print(f"PostgreSQL skipped: cannot create a database through {args.postgres}: {err}")
        return None
    try:
        return run_backend("PostgreSQL", url, root, hellos, args)
    finally:
        asyncio.run(drop_postgres_database(args.postgres, url))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.serve_hello is not None:
        serve_hello(args.serve_hello, args.hello_loop)
        return 0
    counts = (
        args.servers,
        args.concurrency,
        args.rounds,
        args.probe_rounds,
        args.logins,
        args.slow_rounds,
        args.slow_writes,
    )
    if min(counts) < 1 or min(args.seconds, args.probe_seconds) <= 0:
        print("every count and duration must be positive", file=sys.stderr)
        return 2
    if not args.parts or set(args.parts) - set("abc"):
        print("--parts: a, b and/or c", file=sys.stderr)
        return 2
    if args.servers > MAX_PAGE:
        print(f"--servers: at most {MAX_PAGE} (one page)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _terminate)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="stellar-bench-") as tmp:
        root = Path(tmp)
        hellos = (hello_server(root), hello_server(root, "uvloop"))
        with running(hellos):
            sqlite = f"sqlite:///{root / 'stellar.db'}"
            results = [run_backend("SQLite", sqlite, root, hellos, args)]
            if args.postgres:
                postgres = run_postgres(root, hellos, args)
                if postgres is not None:
                    results.append(postgres)
    print(
        f"control plane API bench: servers={args.servers} concurrency={args.concurrency}"
        f" seconds={args.seconds}x{args.rounds} probe-seconds={args.probe_seconds}"
        f"x{args.probe_rounds} logins={args.logins}"
        f" bcrypt-cost={args.bcrypt_cost}; python {platform.python_version()},"
        f" {os.cpu_count()} CPUs, aiohttp {aiohttp.__version__}"
    )
    summary: list[str] = []
    for result in results:
        if result.listing is None:
            continue
        throughput = listing_rows(result.label, result.listing, args.concurrency)
        for name, ratio in list(throughput.items())[:2]:
            summary.append(
                f"ratio req/s, {name} / hello-world, {result.label}: {ratio:.3f}"
                f" (target >= {TARGET_THROUGHPUT_RATIO}:"
                f" {verdict(ratio, TARGET_THROUGHPUT_RATIO, at_least=True)})"
            )
        lists = result.listing
        hello_cpu = lists.hello.cpu_us_per_request
        uvloop_cpu = lists.hello_uvloop.cpu_us_per_request
        uvloop_hello = lists.hello_uvloop.per_second
        for name, run in (("API key", lists.api_key), ("cookie", lists.cookie)):
            cost = run.cpu_us_per_request
            summary.append(
                f"ratio CPU per request, hello-world / {name} list, {result.label}:"
                f" {hello_cpu / cost if cost else 0.0:.3f} ({cost:.0f} us vs {hello_cpu:.0f} us)"
            )
            summary.append(
                f"  against the hello-world on uvloop: req/s"
                f" {run.per_second / uvloop_hello if uvloop_hello else 0.0:.3f}, CPU"
                f" {uvloop_cpu / cost if cost else 0.0:.3f} ({uvloop_cpu:.0f} us)"
            )
    for result in results:
        listing = result.listing
        if listing is None:
            continue
        ours = listing.api_key.per_second
        ratio = listing.compat.per_second / ours if ours else 0.0
        summary.append(
            f"ratio req/s, Pterodactyl GET {COMPAT_SERVERS_PATH} (client key) / our GET"
            f" {SERVERS_PATH} (API key), {result.label}: {ratio:.3f} (target >="
            f" {TARGET_COMPAT_RATIO}: {verdict(ratio, TARGET_COMPAT_RATIO, at_least=True)})"
        )
        compat_cpu = listing.compat.cpu_us_per_request
        summary.append(
            f"ratio CPU per request, our list / Pterodactyl's, {result.label}:"
            f" {listing.api_key.cpu_us_per_request / compat_cpu if compat_cpu else 0.0:.3f}"
        )
    for result in results:
        if result.probes is None:
            continue
        for name, ratio in probe_rows(result.label, result.probes, args.logins).items():
            summary.append(
                f"ratio p99 signing-in / idle, {name}, {result.label}: {ratio:.2f}"
                f" (target <= {TARGET_P99_RATIO}:"
                f" {verdict(ratio, TARGET_P99_RATIO, at_least=False)})"
            )
    for result in results:
        if result.slow_node is None:
            continue
        ratio = slow_node_rows(result.label, result.slow_node, args.slow_node_seconds)
        summary.append(
            f"ratio p99 writes while a node is slow / idle, {result.label}: {ratio:.2f}"
            f" (target <= {TARGET_P99_RATIO}: {verdict(ratio, TARGET_P99_RATIO, at_least=False)})"
        )
    print(f"total bench time {time.perf_counter() - started:.1f} s")
    for line in summary:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
