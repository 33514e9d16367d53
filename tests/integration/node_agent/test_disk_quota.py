"""Disk limits enforced by the kernel: real agents, real dockerd, real btrfs and ext4 mounts.

Each test starts its own agent whose disk backend lives in the test's tmp path: the btrfs
pool is a 256 MiB image the agent creates and loop-mounts; the ext4 backend makes one image
per server. Writes come from inside the game's container (the fake game's ``bigfile``
console command, and ``dd`` run as the game user). Teardown deletes the servers through the
agent, stops it (a development agent unmounts what it mounted), and then unmounts and
detaches whatever might remain, so a failing test leaves no mount or loop device behind.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import aiodocker
import aiohttp
import pytest

from node_agent.docker.hardening import SERVER_LABEL, game_container_name
from node_agent.storage.btrfs import parse_qgroups
from tests.conftest import service_missing
from tests.support.agent_process import AgentProcess, SigningKey, free_port, mint_for
from tests.support.containers import FAKE_GAME_IMAGE, Answer, SignedAgentClient, build_test_images
from tests.support.storage import (
    btrfs,
    loop_devices_under,
    mounts_under,
    release_everything_under,
)

pytestmark = [pytest.mark.docker, pytest.mark.timeout(180)]

MIB = 1024 * 1024
POOL_MIB = 256
# The kernel refuses the write itself; writing 100 MiB to the page cache takes well under this.
IMMEDIATE_SECONDS = 10.0
QUOTA_ERRORS = ("Disk quota exceeded", "No space left on device")


@pytest.fixture(scope="module", autouse=True)
def test_images() -> None:
    """Root (to mount) and a Docker engine with the local test images."""
    if os.geteuid() != 0:
        pytest.skip("the btrfs and ext4 backends need root to mount filesystems")
    if (
        shutil.which("docker") is None
        or subprocess.run(
            ["docker", "info"], capture_output=True, timeout=60, check=False
        ).returncode
    ):
        service_missing("Docker engine not reachable (deploy/dev/ensure-services.sh docker)")
    build_test_images()


@pytest.fixture
async def docker() -> AsyncIterator[aiodocker.Docker]:
    client = aiodocker.Docker()
    try:
        yield client
    finally:
        await client.close()


@dataclass
class QuotaNode:
    """An agent with one disk backend, and the servers a test made on it."""

    agent: AgentProcess
    api: SignedAgentClient
    backend: str
    created: list[uuid.UUID] = field(default_factory=list)

    async def create(self, **changes: Any) -> uuid.UUID:
        answer = await self.api.create(self.spec(**changes))
        assert answer.status == 201, answer.body
        return self.created[-1]

    def spec(self, **changes: Any) -> dict[str, Any]:
        server_id = uuid.uuid4()
        self.created.append(server_id)
        spec: dict[str, Any] = {
            "uuid": str(server_id),
            "image": FAKE_GAME_IMAGE,
            "memory_mib": 64,
            "cpu_percent": 50,
            "disk_mib": 64,
            "pids_limit": 64,
            "allocations": [{"ip": "127.0.0.1", "port": free_port()}],
            "stop": {"type": "command", "value": "stop"},
            "stop_timeout_seconds": 5,
        }
        spec.update(changes)
        return spec

    @property
    def pool(self) -> Path:
        return self.agent.data_dir / "pool"

    def volume(self, server_id: uuid.UUID) -> Path:
        if self.backend == "btrfs":
            return self.pool / str(server_id)
        return self.agent.data_dir / "volumes" / str(server_id)

    def ext4_image(self, server_id: uuid.UUID) -> Path:
        return self.agent.data_dir / "volume-images" / f"{server_id}.img"

    async def disk(self, server_id: uuid.UUID) -> Answer:
        return await self.api.send("GET", server_id, "server.disk.read", suffix="/disk")

    async def resize(self, server_id: uuid.UUID, disk_mib: int) -> Answer:
        body = SignedAgentClient.encode({"disk_mib": disk_mib})
        return await self.api.send("PATCH", server_id, "server.disk", suffix="/disk", body=body)


class NodeFactory(Protocol):
    def __call__(self, backend: str) -> QuotaNode: ...


@pytest.fixture
async def node_factory(
    tmp_path: Path,
    signing_key: SigningKey,
    http: aiohttp.ClientSession,
    docker: aiodocker.Docker,
) -> AsyncIterator[NodeFactory]:
    """Start agents with a kernel-enforced backend; undo everything they made at teardown."""
    nodes: list[QuotaNode] = []

    def make(backend: str) -> QuotaNode:
        settings: dict[str, object] = {"storage_backend": backend}
        if backend == "btrfs":
            settings["storage_pool_size_mib"] = POOL_MIB
        agent = AgentProcess(
            tmp_path / f"agent-{len(nodes)}",
            {signing_key.kid: signing_key.public_text},
            settings=settings,
        )
        agent.start()
        node = QuotaNode(agent, SignedAgentClient(agent, signing_key, http), backend)
        nodes.append(node)
        return node

    try:
        yield make
    finally:
        for node in nodes:
            for server_id in node.created:
                if node.agent.running:
                    await node.api.delete(server_id)
                for container in await docker.containers.list(
                    all=True, filters={"label": [f"{SERVER_LABEL}={server_id}"]}
                ):
                    await container.delete(force=True)
            node.agent.stop()
        release_everything_under(tmp_path)


@pytest.fixture(params=["btrfs", "ext4"])
def node(request: pytest.FixtureRequest, node_factory: NodeFactory) -> QuotaNode:
    """An agent on each kernel-enforced backend."""
    return node_factory(str(request.param))


async def exec_in(docker: aiodocker.Docker, name: str, *command: str) -> tuple[int, str]:
    """Run ``command`` in the container as its configured user; exit code and output."""
    execution = await docker.containers.container(name).exec(list(command))
    output = b""
    async with execution.start(detach=False) as stream:
        while (message := await stream.read_out()) is not None:
            output += message.data
    inspected = await execution.inspect()
    return int(inspected["ExitCode"]), output.decode("utf-8", "replace")


async def console(docker: aiodocker.Docker, server_id: uuid.UUID, line: str) -> None:
    """Type a line on the game's console (its stdin)."""
    async with docker.containers.container(game_container_name(server_id)).attach(
        stdin=True
    ) as stream:
        await stream.write_in(line.encode() + b"\n")


async def write_mib(docker: aiodocker.Docker, server_id: uuid.UUID, name: str, mib: int) -> str:
    """Have the game user write ``mib`` MiB to ``/home/container/<name>``; "" or dd's error."""
    code, output = await exec_in(
        docker,
        game_container_name(server_id),
        "dd",
        "if=/dev/zero",
        f"of=/home/container/{name}",
        "bs=1M",
        f"count={mib}",
        "conv=fsync",
    )
    return "" if code == 0 else output


async def start(node: QuotaNode, server_id: uuid.UUID) -> None:
    answer = await node.api.power(server_id, "start")
    assert answer.status == 200, answer.body
    deadline = time.monotonic() + 15
    while not (await node.api.read(server_id)).body["container"]["running"]:
        assert time.monotonic() < deadline, "the game never started"
        await asyncio.sleep(0.1)


async def game_log(docker: aiodocker.Docker, server_id: uuid.UUID) -> str:
    container = docker.containers.container(game_container_name(server_id))
    return "".join(await container.log(stdout=True, stderr=True))


async def wait_for_log(docker: aiodocker.Docker, server_id: uuid.UUID, text: str) -> float:
    """Seconds until ``text`` shows in the game's output."""
    started = time.monotonic()
    while text not in await game_log(docker, server_id):
        assert time.monotonic() - started < IMMEDIATE_SECONDS, f"{text!r} never appeared"
        await asyncio.sleep(0.05)
    return time.monotonic() - started


def expected_error(backend: str) -> str:
    return "Disk quota exceeded" if backend == "btrfs" else "No space left on device"


def qgroup_of(path: Path) -> str:
    return f"0/{btrfs('inspect-internal', 'rootid', str(path)).strip()}"


# --- enforcement ---------------------------------------------------------------------------


async def test_write_past_the_disk_limit_fails_at_once_inside_the_game(
    node: QuotaNode, docker: aiodocker.Docker
) -> None:
    server_id = await node.create(disk_mib=64)
    await start(node, server_id)

    await console(docker, server_id, "bigfile 100")
    elapsed = await wait_for_log(docker, server_id, "bigfile failed")
    error = await write_mib(docker, server_id, "more.bin", 100)

    assert elapsed < IMMEDIATE_SECONDS
    assert expected_error(node.backend) in error
    held = sum(path.stat().st_size for path in node.volume(server_id).iterdir())
    assert held <= 64 * MIB
    assert (await node.api.read(server_id)).body["container"]["running"] is True


async def test_raising_the_limit_online_lets_the_running_game_write_more(
    node_factory: NodeFactory, docker: aiodocker.Docker
) -> None:
    node = node_factory("btrfs")
    server_id = await node.create(disk_mib=64)
    await start(node, server_id)
    assert expected_error("btrfs") in await write_mib(docker, server_id, "big.bin", 100)

    answer = await node.resize(server_id, 160)

    assert answer.status == 200, answer.body
    assert answer.body["total_bytes"] == 160 * MIB
    assert await write_mib(docker, server_id, "big.bin", 100) == ""
    assert (node.volume(server_id) / "big.bin").stat().st_size == 100 * MIB
    assert (await node.api.read(server_id)).body["container"]["running"] is True


async def test_lowering_the_limit_below_usage_is_refused(
    node_factory: NodeFactory, docker: aiodocker.Docker
) -> None:
    node = node_factory("btrfs")
    server_id = await node.create(disk_mib=128)
    await start(node, server_id)
    assert await write_mib(docker, server_id, "data.bin", 90) == ""

    refused = await node.resize(server_id, 64)
    lowered = await node.resize(server_id, 100)

    assert refused.status == 409
    assert "a 64 MiB limit would be below" in refused.body["error"]["message"]
    assert lowered.status == 200
    assert lowered.body["total_bytes"] == 100 * MIB
    assert expected_error("btrfs") in await write_mib(docker, server_id, "more.bin", 20)


async def test_the_ext4_backend_refuses_to_resize_with_a_clear_error(
    node_factory: NodeFactory,
) -> None:
    node = node_factory("ext4")
    server_id = await node.create(disk_mib=64)

    answer = await node.resize(server_id, 128)

    assert answer.status == 409
    assert "ext4 backend cannot grow" in answer.body["error"]["message"]


async def test_disk_usage_reports_used_and_total_bytes(
    node: QuotaNode, docker: aiodocker.Docker
) -> None:
    server_id = await node.create(disk_mib=128)
    await start(node, server_id)
    assert await write_mib(docker, server_id, "data.bin", 20) == ""

    answer = await node.disk(server_id)

    assert answer.status == 200, answer.body
    assert answer.body["backend"] == node.backend
    assert answer.body["enforced"] is True
    assert 20 * MIB <= answer.body["used_bytes"] < 30 * MIB
    if node.backend == "btrfs":
        assert answer.body["total_bytes"] == 128 * MIB
    else:  # the filesystem's own metadata takes a little of the image
        assert 100 * MIB < answer.body["total_bytes"] <= 128 * MIB
    assert (await node.disk(uuid.uuid4())).status == 404


# --- lifecycle -----------------------------------------------------------------------------


async def test_delete_removes_the_subvolume_and_its_qgroup(node_factory: NodeFactory) -> None:
    node = node_factory("btrfs")
    server_id = await node.create()
    volume = node.volume(server_id)
    qgroup = qgroup_of(volume)
    assert qgroup in parse_qgroups(btrfs("qgroup", "show", "--raw", "-re", str(node.pool)))

    assert (await node.api.delete(server_id)).status == 204

    assert not volume.exists()
    assert str(server_id) not in btrfs("subvolume", "list", str(node.pool))
    remaining = parse_qgroups(btrfs("qgroup", "show", "--raw", "-re", "--sync", str(node.pool)))
    assert qgroup not in remaining


async def test_delete_unmounts_detaches_and_removes_the_ext4_image(
    node_factory: NodeFactory,
) -> None:
    node = node_factory("ext4")
    server_id = await node.create()
    image = node.ext4_image(server_id)
    assert node.volume(server_id) in mounts_under(node.agent.root)
    assert len(loop_devices_under(image.parent)) == 1

    assert (await node.api.delete(server_id)).status == 204

    assert not image.exists()
    assert not node.volume(server_id).exists()
    assert mounts_under(node.agent.root) == []
    assert loop_devices_under(node.agent.root) == []


async def test_create_with_an_image_that_cannot_be_pulled_leaves_no_volume_behind(
    node: QuotaNode,
) -> None:
    spec = node.spec(image="stellar-test/does-not-exist:1")
    mounts_before = mounts_under(node.agent.root)
    loops_before = loop_devices_under(node.agent.root)

    answer = await node.api.create(spec)

    assert answer.status == 400
    server_id = uuid.UUID(spec["uuid"])
    assert not node.volume(server_id).exists()
    assert mounts_under(node.agent.root) == mounts_before
    assert loop_devices_under(node.agent.root) == loops_before
    if node.backend == "btrfs":
        assert str(server_id) not in btrfs("subvolume", "list", str(node.pool))
    else:
        assert not node.ext4_image(server_id).exists()


async def test_agent_restart_and_remount_keep_the_volumes(
    node: QuotaNode, docker: aiodocker.Docker
) -> None:
    server_id = await node.create(disk_mib=64)
    await start(node, server_id)
    assert await write_mib(docker, server_id, "world.dat", 5) == ""

    node.agent.kill()  # a crash: the pool stays mounted and is reused
    node.agent.start()
    assert (await node.api.read(server_id)).body["container"]["running"] is True
    stopped = await node.api.power(server_id, "kill")
    assert stopped.status == 200, stopped.body
    node.agent.stop()  # a development agent unmounts what it mounted
    assert mounts_under(node.agent.root) == []
    assert loop_devices_under(node.agent.root) == []
    node.agent.start()  # ... and mounts it again, as after a reboot

    remounted = node.pool if node.backend == "btrfs" else node.volume(server_id)
    assert remounted in mounts_under(node.agent.root)
    assert (node.volume(server_id) / "world.dat").stat().st_size == 5 * MIB
    await start(node, server_id)
    assert expected_error(node.backend) in await write_mib(docker, server_id, "more.bin", 100)
    assert (await node.disk(server_id)).body["used_bytes"] >= 5 * MIB


async def test_system_facts_say_which_backend_holds_the_limits(
    node: QuotaNode, node_factory: NodeFactory, http: aiohttp.ClientSession
) -> None:
    directory_agent = AgentProcess(
        node.agent.root.parent / "agent-directory", node.agent.trusted_keys
    )
    directory_agent.start()
    try:
        facts = []
        for agent in (node.agent, directory_agent):
            token = mint_for(agent, node.api.key)
            async with http.get(
                f"{agent.base_url}/api/v1/system", headers={"Authorization": f"Bearer {token}"}
            ) as response:
                assert response.status == 200
                body = await response.json()
            facts.append((body["facts"]["storage_backend"], body["facts"]["storage_enforced"]))
    finally:
        directory_agent.stop()

    assert facts == [(node.backend, True), ("directory", False)]
    assert "DISK LIMITS ARE NOT ENFORCED" in directory_agent.log_text()


@pytest.mark.parametrize(
    ("backend", "reason"),
    [
        ("btrfs", "storage_backend btrfs: /proc is a proc mount, not a btrfs pool"),
        ("auto", "storage: disk limits cannot be enforced on this node"),
    ],
)
def test_production_agent_without_an_enforcing_backend_exits_before_listening(
    tmp_path: Path, signing_key: SigningKey, backend: str, reason: str
) -> None:
    agent = AgentProcess(
        tmp_path,
        {signing_key.kid: signing_key.public_text},
        settings={
            "environment": "production",
            "storage_backend": backend,
            # A mount point that is not btrfs: no pool can be there.
            "storage_pool_dir": "/proc",
        },
    )
    agent.write_config()

    result = subprocess.run(
        [sys.executable, "-m", "node_agent", "serve", "--config", str(agent.config_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 2, result.stderr
    assert reason in result.stderr
