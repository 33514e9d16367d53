"""What the security layer costs: the rate limiter (memory, Redis) and secret encryption.

Run ``python bench/security_layer.py`` (``--help`` for the options). In one run it

1. times ``SecretBox.encrypt`` and ``SecretBox.decrypt`` of one field (a 32-byte secret
   under a random 32-byte key, bound to a table, column and row as stored values are), and,
   in process, the limiter step itself: ``RateLimiter.check`` on each backend and
   ``Decision.headers`` (machine noise hides a few µs in the HTTP figures; this does not);
2. serves the same control-plane app three ways, each in a subprocess of this same script
   (``--serve VARIANT PORT``: ``create_app(load_settings(), background_jobs=False)`` under
   ``shared.http_server.run_app``, with the logging and run options of ``stellar-cp serve``),
   on one migrated SQLite file (or a fresh PostgreSQL database with ``--postgres URL``):

   * ``memory``: the rate limiter on its in-memory backend;
   * ``redis``: the rate limiter on Redis (``--redis``; a database of its own, 14 by
     default, away from the test suite's 15);
   * ``none``: without the rate limiter. The app has no switch to turn it off, so in that
     subprocess ``control_plane.api.routing._rate_limit`` (the one step every API route
     takes before anything else, which calls ``RateLimiter.check`` and stores the decision
     for the rate-limit headers) is replaced by a coroutine that does nothing, before the
     app serves a request. Everything else is the same app.

   Limits are raised (``api=1000000/60``) so the limiter refuses nothing; each variant is
   checked first: ``memory`` and ``redis`` answer with rate-limit headers, ``none``
   without, and the Redis bucket exists. Then requests/s and p50/p99 are measured with one
   keep-alive ``aiohttp.ClientSession`` per variant and ``--concurrency`` requests in flight,
   in alternating time-boxed blocks (noise falls on all three alike), for two requests:

   * ``GET /api/v1/auth/session`` with a session cookie: a cheap authenticated call
     (session look-up, user look-up, 200);
   * the same without credentials: the limiter, then 401, no database query at all; the
     cheapest request that passes the limiter, so its share is largest there.

It prints figures and asserts nothing about time. Each server's log goes to a file.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import platform
import secrets
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Final

import aiohttp
from aiohttp import web

# Run as a script (python bench/x.py), the repository root is not on the path yet.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.databases import create_postgres_database, drop_postgres_database
from bench.load import Run, alternate, client_session, get_request
from bench.processes import (
    Server,
    free_port,
    percentile,
    running,
    us_since,
)
from control_plane import cli_ops
from control_plane.db.engine import create_engine, session_factory
from control_plane.db.session import transaction
from control_plane.security.encryption import SecretBox
from control_plane.security.rate_limit import (
    MemoryBackend,
    RateLimiter,
    RedisBackend,
    parse_presets,
)
from control_plane.security.sessions import cookie_name, open_session
from control_plane.services import users as user_service
from control_plane.settings import ControlPlaneSettings, load_settings

VARIANTS: Final = ("memory", "redis", "none")
SESSION_PATH: Final = "/api/v1/auth/session"
HEALTH_PATH: Final = "/healthz"
RATE_LIMITS: Final = "api=1000000/60,authentication=1000000/60,sign_in_account=1000000/60"
DEFAULT_REDIS_URL: Final = "redis://127.0.0.1:6379/14"
BUCKET: Final = "stellar:rl:api:127.0.0.1"  # RedisBackend's prefix, the api preset, our IP
EMAIL: Final = "bench@example.org"
PASSWORD: Final = "correct horse battery staple"
REQUEST_TIMEOUT_SECONDS: Final = 30.0
TARGET_RATIO: Final = 0.90
OUR_VARIABLES: Final = ("STELLAR_", "REDIS_URL", "DATABASE_URL")

Sample = list[float]  # microseconds


# --------------------------------------------------------------------------- statistics


# --------------------------------------------------------------------------- the served app


def serve_variant(variant: str, port: int) -> None:
    """The control-plane app as ``stellar-cp serve`` runs it, settings from the environment."""
    from control_plane.api import routing
    from control_plane.app import create_app
    from shared.http_server import run_app
    from shared.logging import configure_logging

    settings = load_settings()
    if variant == "none":

        async def no_rate_limit(request: web.Request, preset: str, *scope: str) -> None:
            return None

        # Looked up as a module global on every request, so this takes effect everywhere.
        routing._take = no_rate_limit
    configure_logging(level=settings.log_level)
    run_app(
        create_app(settings, background_jobs=False),
        host="127.0.0.1",
        port=port,
        shutdown_timeout=10,
        keepalive_timeout=15,
    )


# --------------------------------------------------------------------------- subprocesses


def panel_env(database_url: str, secret: str) -> dict[str, str]:
    """The settings every variant shares (one database, one auth secret, so one cookie)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(OUR_VARIABLES)}
    env.update(
        STELLAR_ENV="development",
        STELLAR_DATABASE_URL=database_url,
        STELLAR_AUTH_SECRET=secret,
        STELLAR_BCRYPT_COST="10",
        STELLAR_RATE_LIMITS=RATE_LIMITS,
    )
    return env


def variant_server(variant: str, root: Path, env: Mapping[str, str], redis_url: str) -> Server:
    port = free_port()
    argv = [sys.executable, str(Path(__file__).resolve()), "--serve", variant, str(port)]
    own = dict(env)
    if variant == "redis":
        own["REDIS_URL"] = redis_url
    return Server(variant, argv, port, HEALTH_PATH, root / f"{variant}.log", root, own)


# --------------------------------------------------------------------------- the database


async def populate(settings: ControlPlaneSettings) -> str:
    """Migrate, then one user with one session; return the session cookie's value."""
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
            _session, token = await open_session(
                db,
                secret=settings.auth_secret or "",
                user=user,
                ip="127.0.0.1",
                user_agent="bench",
                max_age=dt.timedelta(hours=1),
            )
    finally:
        await engine.dispose()
    return token


# --------------------------------------------------------------------------- micro-benchmark


def timed(fn: Callable[[], object], iterations: int) -> Sample:
    sample: Sample = []
    for _ in range(iterations):
        start = time.perf_counter_ns()
        fn()
        sample.append(us_since(start))
    return sample


def bench_secret_box(iterations: int) -> dict[str, Sample]:
    box = SecretBox({"k1": os.urandom(32)})
    plaintext = secrets.token_bytes(24).hex()[:32]  # 32 bytes of text, as a stored secret
    row_id = uuid.uuid4()
    place: dict[str, Any] = {"table": "servers", "column": "secret", "row_id": row_id}
    token = box.encrypt(plaintext, **place)
    if box.decrypt(token, **place) != plaintext:
        raise RuntimeError("SecretBox does not give the plaintext back")
    return {
        "SecretBox.encrypt (32-byte secret)": timed(
            lambda: box.encrypt(plaintext, **place), iterations
        ),
        "SecretBox.decrypt": timed(lambda: box.decrypt(token, **place), iterations),
    }


async def _timed_async(fn: Callable[[], Awaitable[object]], iterations: int) -> Sample:
    sample: Sample = []
    for _ in range(iterations):
        start = time.perf_counter_ns()
        await fn()
        sample.append(us_since(start))
    return sample


async def bench_limiter(iterations: int, redis_url: str) -> dict[str, Sample]:
    """The limiter step in process: one check (the route's token) and its response headers."""
    presets = parse_presets(RATE_LIMITS)
    memory = RateLimiter(MemoryBackend(), presets)
    results = {
        "RateLimiter.check, memory backend": await _timed_async(
            lambda: memory.check("api", "127.0.0.1"), iterations
        )
    }
    decision = await memory.check("api", "127.0.0.1")
    results["Decision.headers (on every response)"] = timed(
        lambda: decision.headers(time.time()), iterations
    )
    if redis_url:
        backend = RedisBackend(redis_url, prefix="stellar:bench:")
        try:
            remote = RateLimiter(backend, presets)
            results["RateLimiter.check, Redis backend"] = await _timed_async(
                lambda: remote.check("api", "127.0.0.1"), max(1, iterations // 4)
            )
        finally:
            await backend.close()
    return results


# --------------------------------------------------------------------------- load


async def check_variant(
    session: aiohttp.ClientSession, server: Server, variant: str, cookie: Mapping[str, str]
) -> None:
    """The variant is what it claims: limited (headers) or not, and allowed through."""
    async with session.get(server.base_url + SESSION_PATH, headers=cookie) as response:
        await response.read()
        status, limited = response.status, "X-RateLimit-Limit" in response.headers
    if status != 200:
        raise RuntimeError(f"{variant}: {SESSION_PATH} with the cookie answered {status}")
    if limited != (variant != "none"):
        raise RuntimeError(f"{variant}: rate-limit headers {'present' if limited else 'absent'}")


async def check_redis_bucket(redis_url: str) -> None:
    backend = RedisBackend(redis_url)
    try:
        client: Any = backend._redis
        if not await client.exists(BUCKET):
            raise RuntimeError(f"redis variant left no bucket {BUCKET} in {redis_url}")
    finally:
        await backend.close()


@dataclass
class Measured:
    """Per endpoint, per variant."""

    runs: dict[str, dict[str, Run]]


async def bench_variants(
    servers: Mapping[str, Server], cookie: str, args: argparse.Namespace
) -> Measured:
    by_cookie = {"Cookie": f"{cookie_name(False)}={cookie}"}
    async with contextlib.AsyncExitStack() as stack:
        sessions = {
            variant: await stack.enter_async_context(client_session(args.concurrency))
            for variant in servers
        }
        for variant, server in servers.items():
            await check_variant(sessions[variant], server, variant, by_cookie)
        if "redis" in servers:
            await check_redis_bucket(args.redis)
        measured = Measured({})
        for label, headers, expect in (
            (f"GET {SESSION_PATH}, cookie (200)", by_cookie, 200),
            (f"GET {SESSION_PATH}, anonymous (401)", {}, 401),
        ):
            targets = [
                get_request(sessions[v], s.base_url + SESSION_PATH, headers, expect)
                for v, s in servers.items()
            ]
            await alternate(targets, 0.4 * len(targets), args.concurrency, 1)  # warm-up
            runs = await alternate(targets, args.seconds, args.concurrency, args.rounds)
            measured.runs[label] = dict(zip(servers, runs, strict=True))
    return measured


# --------------------------------------------------------------------------- report


def ms(value: float) -> str:
    return f"{value / 1000:.2f}"


def report(
    args: argparse.Namespace,
    database: str,
    micro: dict[str, Sample],
    measured: Measured,
    elapsed: float,
) -> None:
    print(
        f"security layer bench: database={database} concurrency={args.concurrency}"
        f" seconds={args.seconds} rounds={args.rounds} iterations={args.iterations};"
        f" python {platform.python_version()}, {os.cpu_count()} CPUs,"
        f" aiohttp {aiohttp.__version__}"
    )
    print(f"micro (µs){'':<32} {'median':>8} {'p90':>8} {'p99':>8}")
    for name, sample in micro.items():
        print(
            f"  {name:<40} {statistics.median(sample):>8.2f} {percentile(sample, 90):>8.2f}"
            f" {percentile(sample, 99):>8.2f}"
        )
    summary: list[str] = []
    for label, runs in measured.runs.items():
        print(f"{label}, {args.concurrency} in flight, keep-alive; latency in ms")
        print(
            f"  {'':<38} {'requests':>9} {'req/s':>8} {'p50':>8} {'p99':>8} {'/none':>7}"
            f" {'unexpected':>10}"
        )
        baseline = runs["none"].per_second
        for variant, run in runs.items():
            ratio = run.per_second / baseline if baseline else 0.0
            name = {
                "memory": "rate limiter, memory backend",
                "redis": "rate limiter, Redis backend",
                "none": "no rate limiter",
            }[variant]
            print(
                f"  {name:<38} {len(run.latencies):>9} {run.per_second:>8.0f}"
                f" {ms(statistics.median(run.latencies)):>8}"
                f" {ms(percentile(run.latencies, 99)):>8} {ratio:>7.3f} {run.errors:>10}"
            )
            if run.first_error:
                print(f"    first unexpected answer: {run.first_error}")
            if variant == "memory":
                verdict = "met" if ratio >= TARGET_RATIO else "NOT met"
                summary.append(
                    f"ratio req/s memory/none, {label}: {ratio:.3f}"
                    f" (target >= {TARGET_RATIO}: {verdict})"
                )
            elif variant == "redis":
                summary.append(f"ratio req/s redis/none, {label}: {ratio:.3f}")
        if baseline:
            per_request = 1e6 / baseline
            for backend in ("memory", "Redis"):
                check = micro.get(f"RateLimiter.check, {backend} backend")
                if check is None:
                    continue
                step = statistics.median(check) + statistics.median(
                    micro["Decision.headers (on every response)"]
                )
                share = 100 * step / per_request
                implied = per_request / (per_request + step)
                summary.append(
                    f"  in process, the {backend} limiter step (check + headers) takes"
                    f" {step:.1f} µs = {share:.1f}% of the {per_request:.0f} µs per request"
                    f" (1/req/s) without it: ratio {implied:.3f} if that were all"
                )
    print(f"total bench time {elapsed:.1f} s")
    for name, sample in micro.items():
        if name.startswith("SecretBox"):
            summary.append(f"{name}: median {statistics.median(sample):.2f} µs per field")
    for line in summary:
        print(line)


# --------------------------------------------------------------------------- main


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight (default 8)")
    parser.add_argument(
        "--seconds",
        type=float,
        default=5.0,
        help="measured seconds per variant and request (default 5)",
    )
    parser.add_argument(
        "--rounds", type=int, default=10, help="alternating blocks per variant (default 10)"
    )
    parser.add_argument(
        "--iterations",
        type=int,
        default=20000,
        help="SecretBox encryptions, decryptions and limiter checks timed (default 20000;"
        " a quarter of it for Redis)",
    )
    parser.add_argument(
        "--redis",
        metavar="URL",
        default=DEFAULT_REDIS_URL,
        help=f"Redis for the redis variant; '' skips it (default {DEFAULT_REDIS_URL})",
    )
    parser.add_argument(
        "--postgres",
        metavar="URL",
        default="",
        help="serve a fresh database created (and dropped) through this PostgreSQL URL"
        " instead of a SQLite file",
    )
    parser.add_argument("--serve", nargs=2, metavar=("VARIANT", "PORT"), help=argparse.SUPPRESS)
    return parser


def _terminate(signum: int, _frame: FrameType | None) -> None:
    # Turn SIGTERM into an exception so that the servers are stopped on the way out.
    raise SystemExit(128 + signum)


def run_servers(database_url: str, root: Path, args: argparse.Namespace) -> Measured:
    env = panel_env(database_url, secrets.token_urlsafe(48))
    cookie = asyncio.run(populate(load_settings(env)))
    variants = [v for v in VARIANTS if v != "redis" or args.redis]
    servers = {v: variant_server(v, root, env, args.redis) for v in variants}
    with running(list(servers.values())):
        return asyncio.run(bench_variants(servers, cookie, args))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.serve is not None:
        variant, port = args.serve
        if variant not in VARIANTS:
            print(f"--serve: unknown variant {variant!r}", file=sys.stderr)
            return 2
        serve_variant(variant, int(port))
        return 0
    if min(args.concurrency, args.rounds, args.iterations) < 1 or args.seconds <= 0:
        print("every count and duration must be positive", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _terminate)
    started = time.perf_counter()
    # First, while no server takes CPU.
    micro = bench_secret_box(args.iterations)
    micro.update(asyncio.run(bench_limiter(args.iterations, args.redis)))
    with tempfile.TemporaryDirectory(prefix="stellar-bench-") as tmp:
        root = Path(tmp)
        if args.postgres:
            url = asyncio.run(create_postgres_database(args.postgres))
            try:
                measured = run_servers(url, root, args)
            finally:
                asyncio.run(drop_postgres_database(args.postgres, url))
            database = "PostgreSQL"
        else:
            measured = run_servers(f"sqlite:///{root / 'stellar.db'}", root, args)
            database = "SQLite"
    report(args, database, micro, measured, time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
