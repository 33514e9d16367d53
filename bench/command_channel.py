"""What the signed command channel costs: minting, verifying, and round trips to a real agent.

Run ``python bench/command_channel.py`` (``--help`` for the options). In one run it measures

1. minting one command token (``CommandSigner.sign``, as the control plane does per request);
2. verifying one token with ``CommandVerifier`` and a real ``PersistentReplayCache`` in a
   temporary directory (every token distinct, so each ``remember()`` succeeds), plus a
   breakdown of both into their steps;
3. round trips of ``GET /api/v1/system`` to a real ``python -m node_agent serve`` process,
   each with a freshly minted token (minting is timed and shown beside the wire time),
   against two unsigned hello-worlds (this same script with ``--serve-hello PORT``) that
   answer a JSON body of the same shape: bare aiohttp, and aiohttp with the agent's own
   middlewares and JSON request logging (``--stack``), so the second ratio is the cost of
   the command token alone. Both run on free loopback ports, each with one keep-alive
   ``aiohttp.ClientSession``; requests go sequentially and then ``--concurrency`` at a time,
   in alternating blocks so that machine noise falls on both targets alike.

It prints figures and asserts nothing about time. The agent's stdout (one JSON line per
request) goes to a file, as it goes to journald in production.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Final

import aiohttp
import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nacl.signing import VerifyKey

# Run as a script (python bench/x.py), the repository root is not on the path yet.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.processes import (
    Server,
    free_port,
    percentile,
    running,
    us_since,
)
from control_plane.security.command_signing import CommandSigner
from node_agent.security.replay import PersistentReplayCache
from shared.command_keys import parse_public_key
from shared.http import error_shape, request_context
from shared.logging import configure_logging
from shared.protocol import (
    ALGORITHM,
    REQUIRED_CLAIMS,
    TOKEN_TYPE,
    CommandClaims,
    CommandVerifier,
    body_hash,
    node_audience,
)

ISSUER: Final = "stellar-cp"
SYSTEM_PATH: Final = "/api/v1/system"
SYSTEM_ACTION: Final = "node.system"
HELLO_PATH: Final = "/hello"
REQUEST_TIMEOUT_SECONDS: Final = 10.0
TARGET_RATIO: Final = 1.5
# Lifetime of a command token is 30 s: verify-benchmark tokens are minted in chunks so that
# none expires before it is verified, however many iterations are asked for.
VERIFY_CHUNK: Final = 1000

Sample = list[float]  # microseconds


# --------------------------------------------------------------------------- statistics


# --------------------------------------------------------------------------- hello-world server


def serve_hello(port: int, *, stack: bool) -> None:
    """The unsigned baseline: one aiohttp route answering a small JSON body.

    With ``stack``, served the way the agent serves: the same request-id/summary-line and
    error middlewares and the same JSON logging, but no command token.
    """
    node_id = str(uuid.uuid4())

    async def hello(_request: web.Request) -> web.Response:
        # About the size and shape of the agent's SystemInfo answer.
        return web.json_response(
            {
                "node_id": node_id,
                "agent_version": "hello",
                "facts": {
                    "cpu_count": os.cpu_count() or 1,
                    "memory_bytes": 8_000_000_000,
                    "disk_total_bytes": 100_000_000_000,
                    "disk_free_bytes": 50_000_000_000,
                    "docker_version": None,
                    "docker_error": "hello world",
                    "refreshed_at": time.time(),
                },
            }
        )

    if stack:
        configure_logging(json=True)
        app = web.Application(middlewares=[request_context, error_shape])
    else:
        app = web.Application()
    app.router.add_get(HELLO_PATH, hello)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


# --------------------------------------------------------------------------- subprocesses


def agent_server(root: Path, signer: CommandSigner, node_id: uuid.UUID) -> Server:
    port = free_port()
    config = root / "agent.toml"
    config.write_text(
        "\n".join(
            [
                f"node_id = {json.dumps(str(node_id))}",
                f"issuer = {json.dumps(ISSUER)}",
                'listen_host = "127.0.0.1"',
                f"listen_port = {port}",
                f"data_dir = {json.dumps(str(root / 'data'))}",
                "",
                "[trusted_keys]",
                f"{json.dumps(signer.kid)} = {json.dumps(signer.public_key)}",
                "",
            ]
        ),
        encoding="utf-8",
    )
    argv = [sys.executable, "-m", "node_agent", "serve", "--config", str(config)]
    return Server("agent", argv, port, "/healthz", root / "agent.log", root)


def hello_server(root: Path, *, stack: bool) -> Server:
    port = free_port()
    argv = [sys.executable, str(Path(__file__).resolve()), "--serve-hello", str(port)]
    name = "hello-stack" if stack else "hello"
    if stack:
        argv.append("--stack")
    return Server(name, argv, port, HELLO_PATH, root / f"{name}.log", root)


# --------------------------------------------------------------------------- micro-benchmarks


def mint_one(signer: CommandSigner, node_id: uuid.UUID) -> str:
    return signer.sign(
        node_id=node_id,
        subject="node",
        action=SYSTEM_ACTION,
        method="GET",
        path=SYSTEM_PATH,
        body=b"",
        user="bench",
    )


def timed(fn: Callable[[], object], iterations: int) -> Sample:
    sample: Sample = []
    for _ in range(iterations):
        start = time.perf_counter_ns()
        fn()
        sample.append(us_since(start))
    return sample


def bench_mint(
    signer: CommandSigner, key: Ed25519PrivateKey, node_id: uuid.UUID, iterations: int
) -> dict[str, Sample]:
    """Minting, then its steps: the claims model, jwt.encode, and the bare signature."""
    issued = int(time.time())
    claims = CommandClaims(
        iss=ISSUER,
        aud=node_audience(node_id),
        sub="node",
        act=SYSTEM_ACTION,
        htm="GET",
        htu=SYSTEM_PATH,
        bdh=body_hash(b""),
        usr="bench",
        iat=issued,
        exp=issued + 30,
        jti="A" * 24,
    )
    payload = claims.model_dump()
    headers = {"kid": signer.kid, "typ": TOKEN_TYPE}
    signing_input = jwt.encode(payload, key, algorithm=ALGORITHM, headers=headers).rpartition(".")
    message = signing_input[0].encode("ascii")

    def build_claims() -> None:
        CommandClaims(
            iss=ISSUER,
            aud=node_audience(node_id),
            sub="node",
            act=SYSTEM_ACTION,
            htm="GET",
            htu=SYSTEM_PATH,
            bdh=body_hash(b""),
            usr="bench",
            iat=issued,
            exp=issued + 30,
            jti="A" * 24,
        ).model_dump()

    return {
        "mint (CommandSigner.sign)": timed(lambda: mint_one(signer, node_id), iterations),
        "  claims model + dump": timed(build_claims, iterations),
        "  jwt.encode (incl. sign)": timed(
            lambda: jwt.encode(payload, key, algorithm=ALGORITHM, headers=headers), iterations
        ),
        "  raw Ed25519 sign": timed(lambda: key.sign(message), iterations),
    }


def bench_verify(
    signer: CommandSigner, node_id: uuid.UUID, iterations: int, root: Path
) -> dict[str, Sample]:
    public = parse_public_key(signer.public_key)
    cache = PersistentReplayCache(root / "replay-cache.log")
    cache.open()
    try:
        verifier = CommandVerifier(
            trusted_keys={signer.kid: public},
            issuer=ISSUER,
            node_id=node_id,
            replay_cache=cache,
        )
        full: Sample = []
        remaining = iterations
        while remaining > 0:
            tokens = [mint_one(signer, node_id) for _ in range(min(VERIFY_CHUNK, remaining))]
            remaining -= len(tokens)
            for token in tokens:
                start = time.perf_counter_ns()
                verifier.verify(token, method="GET", path=SYSTEM_PATH, body=b"")
                full.append(us_since(start))
    finally:
        cache.close()

    token = mint_one(signer, node_id)
    head, _, signature = token.rpartition(".")
    message = head.encode("ascii")
    raw_signature = jwt.utils.base64url_decode(signature)
    payload: dict[str, Any] = jwt.decode(
        token, public, algorithms=[ALGORITHM], audience=node_audience(node_id), issuer=ISSUER
    )
    audience = node_audience(node_id)
    sodium_key = VerifyKey(public.public_bytes_raw())

    def pyjwt_decode() -> None:
        jwt.decode(
            token,
            public,
            algorithms=[ALGORITHM],
            audience=audience,
            issuer=ISSUER,
            options={
                "require": list(REQUIRED_CLAIMS),
                "verify_exp": False,
                "verify_iat": False,
                "verify_nbf": False,
            },
        )

    side_cache = PersistentReplayCache(root / "side-cache.log")
    side_cache.open()
    try:
        jtis = iter([f"jti-{i:020d}" for i in range(iterations)])
        expiry = int(time.time()) + 35
        return {
            "verify + replay cache": full,
            "  raw Ed25519 verify (libsodium)": timed(
                lambda: sodium_key.verify(message, raw_signature), iterations
            ),
            "  claims model_validate": timed(
                lambda: CommandClaims.model_validate(payload), iterations
            ),
            "  replay remember (write)": timed(
                lambda: side_cache.remember(next(jtis), expiry), iterations
            ),
            "  for comparison: raw verify (OpenSSL)": timed(
                lambda: public.verify(raw_signature, message), iterations
            ),
            "  for comparison: PyJWT decode": timed(pyjwt_decode, iterations),
        }
    finally:
        side_cache.close()


# --------------------------------------------------------------------------- round trips


@dataclass
class Run:
    """Per-request latencies (µs) and the wall time the requests took together."""

    latencies: Sample = field(default_factory=list)
    mint: Sample = field(default_factory=list)
    wall_seconds: float = 0.0
    # CPU the server's event-loop thread spent on these requests (machine noise aside, what
    # each request costs the server).
    server_cpu_ns: int = 0

    @property
    def server_cpu_us(self) -> float:
        return self.server_cpu_ns / 1000 / len(self.latencies) if self.latencies else 0.0

    @property
    def per_second(self) -> float:
        return len(self.latencies) / self.wall_seconds if self.wall_seconds else 0.0


Request = Callable[[Run], Awaitable[None]]


def agent_request(
    session: aiohttp.ClientSession, base_url: str, signer: CommandSigner, node_id: uuid.UUID
) -> Request:
    url = base_url + SYSTEM_PATH

    async def one(run: Run) -> None:
        start = time.perf_counter_ns()
        token = mint_one(signer, node_id)
        run.mint.append(us_since(start))
        sent = time.perf_counter_ns()
        async with session.get(url, headers={"Authorization": f"Bearer {token}"}) as response:
            text = await response.text()
            if response.status != 200:
                raise RuntimeError(f"agent answered {response.status}: {text[:200]}")
        json.loads(text)
        # The round trip on the wire; minting is reported beside it.
        run.latencies.append(us_since(sent))

    return one


def hello_request(session: aiohttp.ClientSession, base_url: str) -> Request:
    url = base_url + HELLO_PATH

    async def one(run: Run) -> None:
        start = time.perf_counter_ns()
        async with session.get(url) as response:
            text = await response.text()
            if response.status != 200:
                raise RuntimeError(f"hello answered {response.status}: {text[:200]}")
        json.loads(text)
        run.latencies.append(us_since(start))

    return one


async def block(request: Request, server: Server, run: Run, count: int, concurrency: int) -> None:
    """``count`` requests, ``concurrency`` in flight at a time; adds their wall time to run."""
    cpu = server.cpu_ns()
    start = time.perf_counter()
    if concurrency <= 1:
        for _ in range(count):
            await request(run)
    else:
        share, extra = divmod(count, concurrency)

        async def worker(n: int) -> None:
            for _ in range(n):
                await request(run)

        await asyncio.gather(*(worker(share + (i < extra)) for i in range(concurrency)))
    run.wall_seconds += time.perf_counter() - start
    run.server_cpu_ns += server.cpu_ns() - cpu


Target = tuple[Request, Server]


async def compare(
    agent: Target, hello: Target, total: int, concurrency: int, block_size: int
) -> tuple[Run, Run]:
    """Alternate blocks (agent, hello, hello, agent, ...) until each target served ``total``."""
    agent_run, hello_run = Run(), Run()
    done = 0
    turn = 0
    while done < total:
        count = min(block_size, total - done)
        order = [(agent, agent_run), (hello, hello_run)]
        if turn % 2:
            order.reverse()
        for (request, server), run in order:
            await block(request, server, run, count, concurrency)
        done += count
        turn += 1
    return agent_run, hello_run


def agent_side_durations(log_path: Path, offset: int) -> Sample:
    """``duration_ms`` of the agent's own request lines for /api/v1/system after ``offset``."""
    sample: Sample = []
    with log_path.open("rb") as log:
        log.seek(offset)
        for line in log:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if (
                isinstance(event, dict)
                and event.get("event") == "request"
                and event.get("path") == SYSTEM_PATH
            ):
                sample.append(float(event["duration_ms"]) * 1000)
    return sample


@dataclass
class RoundTrips:
    sequential: tuple[Run, Run]
    stack_sequential: tuple[Run, Run]
    concurrent: tuple[Run, Run] | None
    agent_side: Sample
    agent_log_bytes: int


def _session(concurrency: int) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=max(concurrency, 1)),
        timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS),
    )


async def bench_round_trips(
    agent: Server,
    hello: Server,
    stack: Server,
    signer: CommandSigner,
    node_id: uuid.UUID,
    requests: int,
    concurrency: int,
) -> RoundTrips:
    async with (
        _session(concurrency) as agent_session,
        _session(concurrency) as hello_session,
        _session(concurrency) as stack_session,
    ):
        to_agent = (agent_request(agent_session, agent.base_url, signer, node_id), agent)
        to_hello = (hello_request(hello_session, hello.base_url), hello)
        to_stack = (hello_request(stack_session, stack.base_url), stack)
        warm = max(100, requests // 10)
        await compare(to_agent, to_hello, warm, 1, warm)
        await compare(to_agent, to_stack, warm, 1, warm)
        if concurrency > 1:
            await compare(to_agent, to_hello, warm, concurrency, warm)
        offset = agent.log_path.stat().st_size
        block_size = max(50, min(250, requests // 8))
        sequential = await compare(to_agent, to_hello, requests, 1, block_size)
        agent_side = agent_side_durations(agent.log_path, offset)
        stack_sequential = await compare(to_agent, to_stack, requests, 1, block_size)
        concurrent = None
        if concurrency > 1:
            concurrent = await compare(
                to_agent, to_hello, requests, concurrency, block_size * concurrency // 2
            )
    return RoundTrips(
        sequential, stack_sequential, concurrent, agent_side, agent.log_path.stat().st_size
    )


# --------------------------------------------------------------------------- report


def micro_rows(results: dict[str, Sample]) -> None:
    for name, sample in results.items():
        print(f"  {name:<32} {statistics.median(sample):>9.1f} {percentile(sample, 90):>9.1f}")


def trip_rows(label: str, pair: tuple[Run, Run], baseline: str) -> float:
    agent, hello = pair
    print(f"round trip, {label}")
    print(f"  {'':<32} {'median':>9} {'p99':>9} {'req/s':>9} {'server CPU':>11}")
    for name, run in (("agent /api/v1/system (signed)", agent), (baseline, hello)):
        print(
            f"  {name:<32} {statistics.median(run.latencies):>9.1f}"
            f" {percentile(run.latencies, 99):>9.1f} {run.per_second:>9.0f}"
            f" {run.server_cpu_us:>11.1f}"
        )
    if agent.mint:
        print(f"  {'  + minting before each (client)':<32} {statistics.median(agent.mint):>9.1f}")
    ratio = statistics.median(agent.latencies) / statistics.median(hello.latencies)
    throughput = agent.per_second / hello.per_second
    cpu = agent.server_cpu_us / hello.server_cpu_us if hello.server_cpu_us else 0.0
    print(
        f"  ratio agent/hello: median latency {ratio:.2f}, throughput {throughput:.2f},"
        f" server CPU per request {cpu:.2f}"
    )
    return ratio


def report(
    args: argparse.Namespace,
    mint: dict[str, Sample],
    verify: dict[str, Sample],
    trips: RoundTrips,
    elapsed: float,
) -> None:
    print(
        f"command channel bench: iterations={args.iterations} requests={args.requests}"
        f" concurrency={args.concurrency}; python {platform.python_version()},"
        f" {os.cpu_count()} CPUs, aiohttp {aiohttp.__version__}"
    )
    print(f"micro (µs){'':<26} {'median':>9} {'p90':>9}")
    micro_rows(mint)
    micro_rows(verify)
    ratio = trip_rows(
        f"sequential, keep-alive, {args.requests} requests each (µs)",
        trips.sequential,
        "hello /hello (bare aiohttp)",
    )
    stack_ratio = trip_rows(
        "sequential, against a hello-world served through the agent's own middlewares and"
        " logging (µs)",
        trips.stack_sequential,
        "hello /hello (same stack)",
    )
    if trips.concurrent is not None:
        trip_rows(
            f"{args.concurrency} in flight, {args.requests} requests each (µs)",
            trips.concurrent,
            "hello /hello (bare aiohttp)",
        )
    if trips.agent_side:
        side = trips.agent_side
        print(
            f"agent's own duration_ms (middlewares + handler, 10 µs steps, sequential): median"
            f" {statistics.median(side):.0f} µs, p99 {percentile(side, 99):.0f} µs"
            f" over {len(side)} log lines; agent log {trips.agent_log_bytes / 1024:.0f} KiB"
        )
    print(f"total bench time {elapsed:.1f} s")
    print(
        f"ratio signed/unsigned median round trip: {ratio:.2f} against bare aiohttp,"
        f" {stack_ratio:.2f} against the same stack unsigned (target <= {TARGET_RATIO})"
    )


# --------------------------------------------------------------------------- main


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--iterations", type=int, default=5000, help="tokens minted / verified (default 5000)"
    )
    parser.add_argument(
        "--requests",
        type=int,
        default=5000,
        help="measured requests per target and variant (default 5000)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=8,
        help="requests in flight for the concurrent variant; 1 skips it (default 8)",
    )
    parser.add_argument("--serve-hello", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--stack", action="store_true", help=argparse.SUPPRESS)
    return parser


def _terminate(signum: int, _frame: FrameType | None) -> None:
    # Turn SIGTERM into an exception so that the servers are stopped on the way out.
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.serve_hello is not None:
        serve_hello(args.serve_hello, stack=args.stack)
        return 0
    if args.iterations < 1 or args.requests < 1 or args.concurrency < 1:
        print("--iterations, --requests and --concurrency must be at least 1", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _terminate)
    started = time.perf_counter()
    key = Ed25519PrivateKey.generate()
    signer = CommandSigner(key, issuer=ISSUER)
    node_id = uuid.uuid4()
    with tempfile.TemporaryDirectory(prefix="stellar-bench-") as tmp:
        root = Path(tmp)
        (root / "agent").mkdir()
        (root / "hello").mkdir()
        (root / "verify").mkdir()
        agent = agent_server(root / "agent", signer, node_id)
        hello = hello_server(root / "hello", stack=False)
        stack = hello_server(root / "hello", stack=True)
        # Micro-benchmarks first: servers booting alongside would steal CPU on a small machine.
        mint = bench_mint(signer, key, node_id, args.iterations)
        verify = bench_verify(signer, node_id, args.iterations, root / "verify")
        with running([agent, hello, stack]):
            trips = asyncio.run(
                bench_round_trips(
                    agent, hello, stack, signer, node_id, args.requests, args.concurrency
                )
            )
    report(args, mint, verify, trips, time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
