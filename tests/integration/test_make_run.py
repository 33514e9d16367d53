"""`make run`, the README's first command: both services up, the node answers, Ctrl-C stops all."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest

from node_agent.docker.hardening import game_container_name
from tests.support.ports import free_port

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def processes_mentioning(text: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(f"{entry.name}: {cmdline}")
    return found


def served_fingerprint(port: int) -> str:
    """The SHA256 fingerprint of the host key an SSH server on loopback presents."""
    transport = paramiko.Transport(("127.0.0.1", port))
    try:
        transport.start_client(timeout=10)
        blob = transport.get_remote_server_key().asbytes()
    finally:
        transport.close()
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


class MakeRun:
    def __init__(self, data_dir: Path, log: Path) -> None:
        self.data_dir = data_dir
        self.cp_port = free_port()
        self.agent_port = free_port()
        self.sftp_port = free_port()
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [
                    "make",
                    "--no-print-directory",
                    "run",
                    f"STELLAR_DATA_DIR={self.data_dir}",
                    f"CP_PORT={self.cp_port}",
                    f"AGENT_PORT={self.agent_port}",
                    f"SFTP_PORT={self.sftp_port}",
                ],
                cwd=REPO,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def wait_for(self, text: str, timeout: float = 240) -> str:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            output = self.log.read_text(errors="replace")
            if text in output:
                return output
            if self.process.poll() is not None:
                pytest.fail(f"make run exited {self.process.returncode}:\n{output[-3000:]}")
            time.sleep(0.2)
        pytest.fail(f"{text!r} not printed in {timeout} s:\n{self.log.read_text()[-3000:]}")

    def interrupt(self) -> None:
        """Ctrl-C, as a terminal sends it: SIGINT to the whole foreground process group.

        make itself then ends by SIGINT (as it always does on Ctrl-C), after its child, the
        dev stack, has stopped both services and said so.
        """
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGINT)
        code = self.process.wait(timeout=60)
        assert code in (0, -signal.SIGINT), self.log.read_text()[-3000:]
        assert self.log.read_text().count("stellar-cp dev: stopped") == self.log.read_text().count(
            "Press Ctrl-C to stop"
        )

    def cli(
        self, *args: str, stdin: str | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        env_file = self.data_dir / "control-plane.env"
        values = dict(
            line.split("=", 1)
            for line in env_file.read_text().splitlines()
            if "=" in line and not line.startswith("#")
        )
        return subprocess.run(
            [sys.executable, "-m", "control_plane", *args],
            env={**os.environ, **values},
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


@pytest.fixture
def demo_containers() -> Iterator[list[str]]:
    """Containers of demo games a test made; removed after it (the dev agent only stops them)."""
    names: list[str] = []
    yield names
    for name in names:
        subprocess.run(["docker", "rm", "--force", name], capture_output=True, timeout=60)


def test_make_run_starts_both_services_pings_the_node_and_stops_cleanly(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    run = MakeRun(data_dir, tmp_path / "make-run.log")
    run.start()
    try:
        banner = run.wait_for("Press Ctrl-C to stop")
        assert "first admin   : admin@stellar.local" in banner
        assert f"panel         : http://localhost:{run.cp_port}/" in banner
        assert listening(run.cp_port)
        assert listening(run.agent_port)
        # SFTP on the local agent: the banner says how, and its fingerprint is the one served.
        assert f"sftp -P {run.sftp_port} <account>.<server short id>@127.0.0.1" in banner
        printed = re.search(r"host key      : (SHA256:\S+)", banner)
        assert printed, banner
        assert served_fingerprint(run.sftp_port) == printed[1]

        ping = run.cli("node", "ping", "local")
        assert ping.returncode == 0, ping.stderr
        info = json.loads(ping.stdout)
        assert info["agent_version"]
        assert info["facts"]["cpu_count"] >= 1

        for name in ("control-plane.env", "command-signing.key", "agent.toml"):
            mode = stat.S_IMODE((data_dir / name).stat().st_mode)
            assert mode == 0o600, f"{name} has mode {oct(mode)}"
    finally:
        run.interrupt()
    assert not listening(run.cp_port)
    assert not listening(run.agent_port)
    assert processes_mentioning(str(data_dir)) == []

    # Second start: same secrets, the admin is not created again.
    secrets_before = (data_dir / "control-plane.env").read_text()
    run.start()
    try:
        banner = run.wait_for("an admin exists already")
        assert run.cli("node", "ping", "local").returncode == 0
    finally:
        run.interrupt()
    assert (data_dir / "control-plane.env").read_text() == secrets_before
    assert processes_mentioning(str(data_dir)) == []


@pytest.mark.docker
def test_make_run_offers_the_freeciv_demo_in_one_command(
    tmp_path: Path, demo_containers: list[str]
) -> None:
    run = MakeRun(tmp_path / "data", tmp_path / "make-run.log")
    run.start()
    try:
        banner = run.wait_for("Press Ctrl-C to stop")
        assert "stellar-cp demo create" in banner

        demo = run.cli("demo", "create", timeout=600)

        assert demo.returncode == 0, demo.stderr
        found = re.search(r"console  : stellar-cp server console ([0-9a-f-]{36})", demo.stdout)
        assert found, demo.stdout
        demo_containers.append(game_container_name(uuid.UUID(found[1])))
        console = run.cli("server", "console", found[1], stdin="list\n")
        assert "List of players:" in console.stdout, console.stdout + console.stderr
    finally:
        run.interrupt()
    assert processes_mentioning(str(tmp_path / "data")) == []
