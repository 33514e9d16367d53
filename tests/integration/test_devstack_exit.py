"""Ctrl-C on the dev stack (`make run`) leaves no game running and no pool mounted behind it.

The dev stack's agent runs a game from the fake-game image in its btrfs pool (a loop-mounted
image under the test's directory). After SIGINT to the stack's process group, as a terminal
sends it, the game's container has stopped, and the pool is unmounted with its loop device
detached. Started again, the stack brings the game back, and a second Ctrl-C cleans up again.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import tomllib
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pytest

from control_plane.security.command_signing import CommandSigner
from node_agent.docker.hardening import game_container_name
from tests.support.agent_process import free_port
from tests.support.factories import server_spec
from tests.support.storage import (
    loop_devices_left_under,
    loop_devices_under,
    mounts_under,
    needs_root_to_mount,
    release_everything_under,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.docker,
    needs_root_to_mount,
    pytest.mark.timeout(420),
]
BANNER: Final = "Press Ctrl-C to stop"


@dataclass
class DevStack:
    """``stellar-cp dev`` in its own process group, its output in a file."""

    data_dir: Path
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.port = free_port()
        self.agent_port = free_port()
        self.sftp_port = free_port()

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "control_plane", "dev", "--data-dir", str(self.data_dir),
                 "--port", str(self.port), "--agent-port", str(self.agent_port),
                 "--sftp-port", str(self.sftp_port)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )  # fmt: skip
        self.wait_for(BANNER, occurrence=self.output().count(BANNER) + 1)

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""

    def wait_for(self, text: str, *, occurrence: int = 1, timeout: float = 180) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while self.output().count(text) < occurrence:
            if self.process.poll() is not None:
                pytest.fail(f"the dev stack exited {self.process.returncode}:\n{self.output()}")
            if time.monotonic() > deadline:
                pytest.fail(f"{text!r} not printed in {timeout} s:\n{self.output()[-4000:]}")
            time.sleep(0.2)

    def ctrl_c(self, timeout: float = 180) -> int:
        """SIGINT to the whole process group, as a terminal sends it; the exit code."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGINT)
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def agent_request(self, method: str, path: str, action: str, body: object = None) -> Any:
        """A command signed with the stack's own key, sent to its agent; the JSON answer."""
        config = tomllib.loads((self.data_dir / "agent.toml").read_text(encoding="utf-8"))
        signer = CommandSigner.from_file(
            self.data_dir / "command-signing.key", issuer=config["issuer"]
        )
        data = b"" if body is None else json.dumps(body).encode()
        server = path.split("/")[4]
        token = signer.sign(
            node_id=uuid.UUID(config["node_id"]), subject=f"server:{server}", action=action,
            method=method, path=path, body=data, user="test",
        )  # fmt: skip
        request = urllib.request.Request(
            f"http://127.0.0.1:{config['listen_port']}{path}",
            data=data or None,
            method=method,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            return json.loads(response.read() or b"null")


def container_running(name: str) -> bool | None:
    """Whether the container runs (None: there is no such container)."""
    result = subprocess.run(
        ["docker", "inspect", "--format", "{{.State.Running}}", name],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    return None if result.returncode != 0 else result.stdout.strip() == "true"


def wait_until_running(name: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while container_running(name) is not True:
        assert time.monotonic() < deadline, f"{name} is not running after {timeout} s"
        time.sleep(0.3)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[DevStack]:
    stack = DevStack(tmp_path / "data", tmp_path / "dev.log")
    try:
        yield stack
    finally:
        stack.kill()
        release_everything_under(tmp_path)


def test_ctrl_c_stops_the_dev_stacks_games_and_releases_its_pool(stack: DevStack) -> None:
    spec = server_spec(disk_mib=64, stop_timeout_seconds=10)
    server_id = uuid.UUID(spec["uuid"])
    container = game_container_name(server_id)
    path = f"/api/v1/servers/{server_id}"
    stack.start()
    try:
        stack.agent_request("PUT", path, "server.create", spec)
        stack.agent_request("POST", f"{path}/power", "server.power", {"action": "start"})
        wait_until_running(container)
        assert mounts_under(stack.data_dir), "the agent did not mount its btrfs pool"
        assert loop_devices_under(stack.data_dir)

        assert stack.ctrl_c() == 0, stack.output()[-4000:]
        assert container_running(container) is False
        assert mounts_under(stack.data_dir) == []
        assert loop_devices_left_under(stack.data_dir) == []
        assert "stellar-cp dev: stopped" in stack.output()

        # Started again, the stack brings back the game that was running; Ctrl-C again.
        stack.start()
        wait_until_running(container)
        assert stack.ctrl_c() == 0, stack.output()[-4000:]
        assert container_running(container) is False
        assert mounts_under(stack.data_dir) == []
        assert loop_devices_left_under(stack.data_dir) == []
    finally:
        stack.kill()
        subprocess.run(["docker", "rm", "--force", container], capture_output=True, check=False)
