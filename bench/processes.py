"""What the benchmark scripts share: server subprocesses on loopback ports, and statistics."""

from __future__ import annotations

import contextlib
import math
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from tests.support.ports import free_port as free_port

REPOSITORY: Final = Path(__file__).resolve().parent.parent

START_TIMEOUT_SECONDS: Final = 30.0
STOP_TIMEOUT_SECONDS: Final = 10.0


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (``pct`` in 0..100) of a non-empty sample."""
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def us_since(start_ns: int) -> float:
    return (time.perf_counter_ns() - start_ns) / 1000


@dataclass
class Server:
    """A server subprocess with stdout and stderr going to a log file."""

    name: str
    argv: list[str]
    port: int
    ready_path: str
    log_path: Path
    cwd: Path
    env: dict[str, str] | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        base = os.environ if self.env is None else self.env
        # This checkout's code (bench and the services), whatever the venv has installed (an
        # editable install may point at another worktree); the servers run in temporary
        # directories, where `python -m bench.…` would find nothing.
        path = [str(REPOSITORY), *filter(None, [base.get("PYTHONPATH")])]
        env = {**base, "PYTHONPATH": os.pathsep.join(path), "PYTHONUNBUFFERED": "1"}
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
                env=env,
            )

    def wait_ready(self, deadline: float) -> None:
        url = self.base_url + self.ready_path
        while True:
            if self.process is None or self.process.poll() is not None:
                code = None if self.process is None else self.process.returncode
                raise RuntimeError(f"{self.name} exited with {code}:\n{self.log_tail()}")
            with (
                contextlib.suppress(urllib.error.URLError, OSError),
                urllib.request.urlopen(url, timeout=0.5) as response,
            ):
                if response.status == 200:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} not ready at {url}:\n{self.log_tail()}")
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM and wait; SIGKILL if it does not exit in time. Safe to call twice."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                print(f"{self.name} ignored SIGTERM for {STOP_TIMEOUT_SECONDS} s: killing it")
                process.kill()
                process.wait()

    def cpu_ns(self) -> int:
        """CPU time its main thread (the event loop) has used so far, in ns (Linux)."""
        if self.process is None:
            return 0
        with open(f"/proc/{self.process.pid}/schedstat", encoding="ascii") as stat:
            return int(stat.read().split()[0])

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return ""
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])


@contextlib.contextmanager
def running(
    servers: Sequence[Server], start_timeout: float = START_TIMEOUT_SECONDS
) -> Iterator[None]:
    """Start every server, wait until each answers, and stop them all whatever happens."""
    try:
        for server in servers:
            server.start()
        deadline = time.monotonic() + start_timeout
        for server in servers:
            server.wait_ready(deadline)
        yield
    except Exception:
        # The temporary directory goes away with the logs: show what the servers said first.
        for server in servers:
            print(f"--- last lines of {server.name}'s log:\n{server.log_tail()}", file=sys.stderr)
        raise
    finally:
        for server in servers:
            server.stop()
