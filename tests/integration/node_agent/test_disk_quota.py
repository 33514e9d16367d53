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
import subprocess
import sys
import time
import uuid
from pathlib import Path

import aiodocker
import aiohttp
import pytest

from node_agent.docker.hardening import game_container_name
from node_agent.storage.btrfs import parse_qgroups
from tests.integration.node_agent.quota_nodes import (
    MIB,
    NodeFactory,
    QuotaNode,
    console,
    start,
    write_mib,
)
from tests.support.agent_process import AgentProcess, SigningKey, mint_for
from tests.support.storage import (
    btrfs,
    loop_devices_left_under,
    loop_devices_under,
    mounts_under,
    needs_root_to_mount,
)

pytestmark = [pytest.mark.docker, needs_root_to_mount, pytest.mark.timeout(180)]

# The kernel refuses the write itself; writing 100 MiB to the page cache takes well under this.
IMMEDIATE_SECONDS = 10.0
QUOTA_ERRORS = ("Disk quota exceeded", "No space left on device")


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
    assert (await node.api.read(server_id)).body["disk_mib"] == 160
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
    assert loop_devices_left_under(node.agent.root) == []


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
    assert loop_devices_left_under(node.agent.root) == []
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


# --- a volume the game filled with names ----------------------------------------------------


def peak_rss_mib(agent: AgentProcess) -> float:
    process = agent._process
    assert process is not None, "the agent is not running"
    for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc/<pid>/status")


def plant_files(directory: Path, count: int) -> None:
    """What a game can do in its own volume: one directory with ``count`` empty files."""
    directory.mkdir()
    for index in range(count):
        os.close(os.open(directory / f"{index:08d}", os.O_CREAT | os.O_WRONLY, 0o644))
    os.chown(directory, 1000, 1000)


async def test_a_volume_with_very_many_files_costs_the_starting_agent_no_memory(
    node_factory: NodeFactory,
) -> None:
    # At each start the agent looks through every volume for the temporary files of writes
    # a killed agent left behind. It listed each directory whole first: a game that filled
    # one directory with millions of names (its disk limit allowing) made every start of
    # the agent need gigabytes, and the agent of the whole node ended out of memory.
    node = node_factory("btrfs", storage_pool_size_mib=1024)
    server_id = await node.create(disk_mib=768)
    node.agent.kill()
    node.agent.start()
    await node.api.read(server_id)
    baseline = peak_rss_mib(node.agent)
    plant_files(node.volume(server_id) / "many", 300_000)

    node.agent.kill()
    node.agent.start()
    await node.api.read(server_id)

    grown = peak_rss_mib(node.agent) - baseline
    assert grown < 8, f"the agent's start took {grown:.0f} MiB more"
