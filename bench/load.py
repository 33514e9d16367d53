"""Load generation the HTTP benchmarks share: timed GET loops in alternating blocks."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

import aiohttp

from bench.processes import us_since

REQUEST_TIMEOUT_SECONDS: Final = 30.0
Sample = list[float]


@dataclass
class Run:
    """Per-request latencies (µs) and the wall time the requests took together."""

    latencies: Sample = field(default_factory=list)
    wall_seconds: float = 0.0
    # Answers other than expected (their latency is in the sample too) and the first one seen.
    errors: int = 0
    first_error: str = ""

    def failed(self, what: str) -> None:
        self.errors += 1
        self.first_error = self.first_error or what

    @property
    def per_second(self) -> float:
        return len(self.latencies) / self.wall_seconds if self.wall_seconds else 0.0


Request = Callable[[Run], Awaitable[None]]


def client_session(concurrency: int) -> aiohttp.ClientSession:
    # No cookie jar: every request carries exactly the credentials given to it.
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=max(concurrency, 1)),
        timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS),
        cookie_jar=aiohttp.DummyCookieJar(),
    )


def get_request(
    session: aiohttp.ClientSession,
    url: str,
    headers: Mapping[str, str] | None = None,
    expect: int = 200,
) -> Request:
    fixed = dict(headers or {})

    async def one(run: Run) -> None:
        start = time.perf_counter_ns()
        async with session.get(url, headers=fixed) as response:
            body = await response.read()
        run.latencies.append(us_since(start))
        if response.status != expect:
            run.failed(f"GET {url} answered {response.status}: {body[:200]!r}")

    return one


async def block(request: Request, run: Run, seconds: float, concurrency: int) -> None:
    """``concurrency`` request loops for ``seconds``; adds their wall time to run."""
    start = time.perf_counter()
    deadline = start + seconds

    async def worker() -> None:
        while time.perf_counter() < deadline:
            await request(run)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    run.wall_seconds += time.perf_counter() - start


async def alternate(
    targets: Sequence[Request], seconds: float, concurrency: int, rounds: int
) -> list[Run]:
    """Each target gets ``seconds`` in total, in ``rounds`` blocks, the order rotating."""
    runs = [Run() for _ in targets]
    order = list(range(len(targets)))
    for _ in range(rounds):
        for index in order:
            await block(targets[index], runs[index], seconds / rounds, concurrency)
        order = order[1:] + order[:1]
    return runs
