"""Helpers for tests that run game servers in real containers through a real agent.

:func:`build_test_images` runs ``deploy/dev/build-test-images.sh`` (fast when the images are
current). :class:`SignedAgentClient` sends the control plane's signed server commands to an
:class:`~tests.support.agent_process.AgentProcess`. :func:`exec_in` runs a command in a
container as its user. :func:`cgroup_pids` reads a container's PIDs controller from the host,
which answers even while a fork bomb fills the container.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import aiodocker
import aiohttp

from shared.protocol import mint
from tests.support.agent_process import AgentProcess, SigningKey

REPO_ROOT: Final = Path(__file__).resolve().parents[2]
BUILD_SCRIPT: Final = REPO_ROOT / "deploy" / "dev" / "build-test-images.sh"
FAKE_GAME_IMAGE: Final = "stellar-test/fake-game:latest"
BUSYBOX_IMAGE: Final = "stellar-test/busybox:latest"
# No entrypoint; its command is an egg image's entrypoint script, which runs $STARTUP.
EGG_IMAGE: Final = "stellar-test/egg-game:latest"


def docker_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """``docker *args``, its output as text (a failure is in ``returncode``)."""
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=60, check=False
    )


def build_test_images() -> None:
    """Build the local test images; raise with the script's output if that fails."""
    result = subprocess.run(
        [str(BUILD_SCRIPT)], capture_output=True, text=True, timeout=300, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"{BUILD_SCRIPT.name} failed:\n{result.stdout}{result.stderr}")


@dataclass(frozen=True)
class Answer:
    """An agent's HTTP answer: status and JSON body (None when empty)."""

    status: int
    body: Any


@dataclass
class SignedAgentClient:
    """Sends server commands to one agent, each with a fresh token as the control plane would."""

    agent: AgentProcess
    key: SigningKey
    http: aiohttp.ClientSession

    async def send(
        self,
        method: str,
        server_id: uuid.UUID,
        action: str,
        *,
        suffix: str = "",
        body: bytes = b"",
        subject: str | None = None,
    ) -> Answer:
        """``method /api/v1/servers/<id><suffix>`` signed for ``action``."""
        path = f"/api/v1/servers/{server_id}{suffix}"
        token = mint(
            private_key=self.key.private_key,
            kid=self.key.kid,
            issuer=self.agent.expected_issuer,
            node_id=self.agent.node_id,
            subject=subject or f"server:{server_id}",
            action=action,
            method=method,
            path=path,
            body=body,
            user="test-user",
        )
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        async with self.http.request(
            method, self.agent.base_url + path, data=body, headers=headers
        ) as response:
            text = await response.text()
            return Answer(response.status, await response.json() if text else None)

    @staticmethod
    def encode(value: object) -> bytes:
        """A request body as JSON bytes."""
        return json.dumps(value).encode("utf-8")

    async def create(self, spec: dict[str, Any]) -> Answer:
        server_id = uuid.UUID(str(spec["uuid"]))
        return await self.send("PUT", server_id, "server.create", body=self.encode(spec))

    async def read(self, server_id: uuid.UUID) -> Answer:
        return await self.send("GET", server_id, "server.read")

    async def delete(self, server_id: uuid.UUID) -> Answer:
        return await self.send("DELETE", server_id, "server.delete")

    async def power(self, server_id: uuid.UUID, action: str) -> Answer:
        body = self.encode({"action": action})
        return await self.send("POST", server_id, "server.power", suffix="/power", body=body)


async def exec_in(docker: aiodocker.Docker, name: str, *command: str) -> tuple[int, str]:
    """Run ``command`` in the container as its configured user; exit code and output."""
    execution = await docker.containers.container(name).exec(list(command))
    output = b""
    async with execution.start(detach=False) as stream:
        while (message := await stream.read_out()) is not None:
            output += message.data
    inspected = await execution.inspect()
    return int(inspected["ExitCode"]), output.decode("utf-8", "replace")


@dataclass(frozen=True)
class PidsReading:
    """A container's PIDs cgroup: processes now, the limit, and how often it was hit."""

    current: int
    limit: int
    times_limit_hit: int


def _pids_cgroup_dir(container_id: str) -> Path:
    candidates = [
        Path("/sys/fs/cgroup/pids/docker") / container_id,  # v1, cgroupfs driver
        Path("/sys/fs/cgroup/pids/system.slice") / f"docker-{container_id}.scope",  # v1, systemd
        Path("/sys/fs/cgroup/system.slice") / f"docker-{container_id}.scope",  # v2, systemd
        Path("/sys/fs/cgroup/docker") / container_id,  # v2, cgroupfs
    ]
    for candidate in candidates:
        if (candidate / "pids.max").exists():
            return candidate
    raise FileNotFoundError(f"no pids cgroup found for container {container_id[:12]}")


def cgroup_pids(container_id: str) -> PidsReading:
    """Read the container's PIDs controller from the host's cgroup filesystem."""
    directory = _pids_cgroup_dir(container_id)
    events = (directory / "pids.events").read_text().split()
    hits = int(events[events.index("max") + 1]) if "max" in events else 0
    return PidsReading(
        current=int((directory / "pids.current").read_text()),
        limit=int((directory / "pids.max").read_text()),
        times_limit_hit=hits,
    )


async def remove_container(container: Any) -> None:
    """Force-remove a leftover container; fine if it is gone or dockerd is removing it."""
    try:
        await container.delete(force=True)
    except aiodocker.DockerError as err:
        if err.status == 404 or (err.status == 409 and "in progress" in str(err.message)):
            return
        raise
