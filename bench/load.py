"""Load generation the HTTP benchmarks share: timed GET loops in alternating blocks."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import aiohttp

from bench.processes import us_since

REQUEST_TIMEOUT_SECONDS: Final = 30.0
_CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK")
Sample = list[float]


@dataclass
class Run:
    """Per-request latencies (µs) and the wall time the requests took together."""

    latencies: Sample = field(default_factory=list)
    wall_seconds: float = 0.0
    # Answers other than expected (their latency is in the sample too) and the first one seen.
    errors: int = 0
    first_error: str = ""
    # CPU seconds the serving process spent while the requests ran (``alternate``'s pids):
    # unlike requests/s, hardly moved by other work on the machine.
    cpu_seconds: float = 0.0

    def failed(self, what: str) -> None:
        self.errors += 1
        self.first_error = self.first_error or what

    @property
    def per_second(self) -> float:
        return len(self.latencies) / self.wall_seconds if self.wall_seconds else 0.0

    @property
    def cpu_us_per_request(self) -> float:
        """The server's CPU time per request (its threads included), in µs."""
        return 1e6 * self.cpu_seconds / len(self.latencies) if self.latencies else 0.0


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` and all its threads (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    # utime and stime are fields 14 and 15 of stat(5); the split starts at field 3.
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


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
    targets: Sequence[Request],
    seconds: float,
    concurrency: int,
    rounds: int,
    pids: Sequence[int | None] | None = None,
) -> list[Run]:
    """Each target gets ``seconds`` in total, in ``rounds`` blocks, the order rotating; with
    ``pids`` (the process serving each target), the CPU time that process spent."""
    runs = [Run() for _ in targets]
    order = list(range(len(targets)))
    for _ in range(rounds):
        for index in order:
            pid = pids[index] if pids is not None else None
            before = process_cpu_seconds(pid) if pid is not None else 0.0
            await block(targets[index], runs[index], seconds / rounds, concurrency)
            if pid is not None:
                runs[index].cpu_seconds += process_cpu_seconds(pid) - before
        order = order[1:] + order[:1]
    return runs
