"""Helpers for the deploy tests: an agent serving TLS (optionally inside a network namespace)
and a probe that runs where the test cannot (``ip netns exec NS python -m …probe``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from node_agent.tls import AgentIdentity, generate_identity
from tests.support.agent_process import SigningKey, free_port

REPO_ROOT: Final = Path(__file__).resolve().parents[3]
PROBE: Final = "tests.integration.deploy.probe"


def netns_prefix(netns: str | None) -> list[str]:
    return ["ip", "netns", "exec", netns] if netns else []


def probe(*args: str, netns: str | None = None, timeout: float = 30) -> str:
    """Run the probe (in ``netns``); its one line of output."""
    result = subprocess.run(
        [*netns_prefix(netns), sys.executable, "-m", PROBE, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO_ROOT,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"probe {args} failed ({result.returncode}):\n{result.stderr}")
    return result.stdout.strip()


@dataclass
class TlsAgent:
    """``stellar-agent serve`` with its own certificate, on ``host:port`` (in ``netns``)."""

    root: Path
    key: SigningKey
    host: str = "127.0.0.1"
    port: int = field(default_factory=free_port)
    netns: str | None = None
    node_id: uuid.UUID = field(default_factory=uuid.uuid4)
    tls_dir: Path | None = None
    # The agent's SFTP port (on ``host``), if it serves SFTP.
    sftp_port: int | None = None
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.identity: AgentIdentity = generate_identity(
            self.host, self.tls_dir or self.root / "tls"
        )

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.root / "agent.toml"

    @property
    def log_path(self) -> Path:
        return self.root / "agent.log"

    def write_config(self) -> None:
        values: dict[str, object] = {
            "node_id": str(self.node_id),
            "listen_host": self.host,
            "listen_port": self.port,
            "data_dir": str(self.root / "data"),
            "storage_backend": "directory",
            "tls_cert_file": str(self.identity.cert_file),
            "tls_key_file": str(self.identity.key_file),
        }
        if self.sftp_port is not None:
            values |= {"sftp_port": self.sftp_port, "sftp_listen_host": self.host}
        lines = [f"{name} = {json.dumps(value)}" for name, value in values.items()]
        lines += [
            "",
            "[trusted_keys]",
            f"{json.dumps(self.key.kid)} = {json.dumps(self.key.public_text)}",
        ]
        self.config_path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    def start(self, timeout: float = 20.0) -> None:
        """Start the agent and wait until /healthz answers over TLS with its own certificate."""
        self.write_config()
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [
                    *netns_prefix(self.netns),
                    sys.executable,
                    "-m",
                    "node_agent",
                    "serve",
                    "--config",
                    str(self.config_path),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO_ROOT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        try:
            answer = probe(
                "https-get",
                f"{self.url}/healthz",
                self.identity.fingerprint,
                str(timeout),
                netns=self.netns,
                timeout=timeout + 10,
            )
            if not answer.startswith("200"):
                raise RuntimeError(f"agent not healthy: {answer}\n{self.log_text()}")
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout: float = 10.0) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=timeout)
        if process.poll() is None:
            process.kill()
        process.wait()

    def log_text(self) -> str:
        return (
            self.log_path.read_text(encoding="utf-8", errors="replace")
            if self.log_path.exists()
            else ""
        )

    def requests_seen(self, path: str) -> list[dict[str, Any]]:
        """The agent's request log lines for ``path``."""
        seen = []
        for line in self.log_text().splitlines():
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if (
                    isinstance(event, dict)
                    and event.get("event") == "request"
                    and event.get("path") == path
                ):
                    seen.append(event)
        return seen


def wait_for(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(0.05)


def _connected_to(port: int) -> list[str]:
    """Sockets of this network namespace still connected to ``port`` (TIME_WAIT has no socket)."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError), open(table, encoding="ascii") as rows:
            next(rows)
            for row in rows:
                fields = row.split()
                remote, inode = fields[2], fields[9]
                if int(remote.rsplit(":", 1)[1], 16) == port and inode != "0":
                    found.append(row.strip())
    return found


async def connections_to_port_closed(port: int, timeout: float = 15.0) -> None:
    """Wait until no client socket is connected to ``port``: aiohttp closes a TLS connection it
    refused (a wrong fingerprint) in the background, and an event loop closed before that
    finishes fails with EBUSY (uvloop) — so the test that caused it waits here."""
    deadline = time.monotonic() + timeout
    while left := _connected_to(port):
        if time.monotonic() > deadline:
            raise AssertionError(f"connections to port {port} still open: {left}")
        await asyncio.sleep(0.05)
