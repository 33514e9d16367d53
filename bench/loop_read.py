"""How long the authentication read holds the event loop on SQLite (``StatementReader.one_row``).

Run ``python bench/loop_read.py``: it fills a fresh SQLite file as ``bench/api.py`` does (50
servers, an API key), then reads the key 3,000 times on the event loop and 3,000 times
through the reader threads, and prints the loop thread's CPU time per read on the loop (what
every other request waits for while it runs) beside the wall time of both ways. Wall times
on a loaded machine include the process being descheduled; the CPU time does not. It prints
figures and asserts nothing about time.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

# Run as a script (python bench/x.py), the repository root is not on the path yet.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.api import panel_env, populate
from control_plane.db.engine import create_engine
from control_plane.db.reader import StatementReader
from control_plane.security import api_keys
from control_plane.settings import load_settings
from shared.command_keys import write_private_key

READS = 3000


def summary(label: str, samples: list[float]) -> str:
    ordered = sorted(samples)
    p99 = ordered[int(len(ordered) * 0.99)]
    return (
        f"  {label:<48} median {statistics.median(ordered):8.1f}  p99 {p99:8.1f}"
        f"  max {ordered[-1]:10.1f}  (us)"
    )


async def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="loop-read-"))
    write_private_key(root / "signing.key", Ed25519PrivateKey.generate())
    env = panel_env(f"sqlite:///{root / 'bench.db'}", 1, 10, root / "signing.key")
    settings = load_settings(env)
    population = await populate(settings, 50, "http://127.0.0.1:9")
    engine = create_engine(settings.database_url or "")
    reader = StatementReader(engine)
    split = api_keys._split(population.api_key)
    assert split is not None
    parameters = {"prefix": split[0]}
    try:
        for _ in range(50):  # warm-up: the connection, the compiled statement, the page cache
            await reader.one_row(api_keys._KEY_LOOKUP, parameters)
        loop_cpu: list[float] = []
        loop_wall: list[float] = []
        for _ in range(READS):
            wall, cpu = time.perf_counter_ns(), time.thread_time_ns()
            rows = await reader.one_row(api_keys._KEY_LOOKUP, parameters)
            loop_cpu.append((time.thread_time_ns() - cpu) / 1000)
            loop_wall.append((time.perf_counter_ns() - wall) / 1000)
            assert rows
        threads: list[float] = []
        for _ in range(READS):
            wall = time.perf_counter_ns()
            await reader.rows(api_keys._KEY_LOOKUP, parameters)
            threads.append((time.perf_counter_ns() - wall) / 1000)
    finally:
        await reader.close()
        await engine.dispose()
    print(f"the API key read on SQLite, {READS} reads each way")
    print(summary("on the loop: the loop thread's CPU per read", loop_cpu))
    print(summary("on the loop: wall time per read", loop_wall))
    print(summary("in the reader threads: wall time (loop free)", threads))


if __name__ == "__main__":
    asyncio.run(main())
