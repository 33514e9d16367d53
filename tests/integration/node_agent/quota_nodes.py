"""Agents on a kernel-enforced disk backend, and what their tests do inside the games.

:func:`quota_nodes` starts agents whose btrfs pool or ext4 images live under a test's tmp
path and, when the test ends, deletes their servers through the agent, removes anything
labelled for those servers, stops the agents and unmounts/detaches whatever might remain. The
other helpers act from inside a game container, as the game user would.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Protocol

import aiodocker
import aiohttp

from node_agent.docker.hardening import game_container_name
from tests.integration.node_agent.live_agent import LiveServers
from tests.support.agent_process import AgentProcess, SigningKey
from tests.support.containers import Answer, SignedAgentClient, exec_in
from tests.support.storage import release_everything_under

MIB: Final = 1024 * 1024
POOL_MIB: Final = 256
DISK_MIB: Final = 64  # each server's disk limit, unless a test sets another


@dataclass
class QuotaNode(LiveServers):
    """An agent with one disk backend, and the servers a test made on it."""

    backend: str = field(kw_only=True)

    @property
    def pool(self) -> Path:
        return self.agent.data_dir / "pool"

    def volume(self, server_id: uuid.UUID) -> Path:
        if self.backend == "btrfs":
            return self.pool / str(server_id)
        return super().volume(server_id)

    def ext4_image(self, server_id: uuid.UUID) -> Path:
        return self.agent.data_dir / "volume-images" / f"{server_id}.img"

    async def disk(self, server_id: uuid.UUID) -> Answer:
        return await self.api.send("GET", server_id, "server.disk.read", suffix="/disk")

    async def resize(self, server_id: uuid.UUID, disk_mib: int) -> Answer:
        body = SignedAgentClient.encode({"disk_mib": disk_mib})
        return await self.api.send("PATCH", server_id, "server.disk", suffix="/disk", body=body)


class NodeFactory(Protocol):
    def __call__(self, backend: str, **settings: object) -> QuotaNode: ...


@asynccontextmanager
async def quota_nodes(
    root: Path, signing_key: SigningKey, http: aiohttp.ClientSession, docker: aiodocker.Docker
) -> AsyncIterator[NodeFactory]:
    """Start agents with a kernel-enforced backend under ``root``; undo everything after."""
    nodes: list[QuotaNode] = []

    def make(backend: str, **more_settings: object) -> QuotaNode:
        settings: dict[str, object] = {"storage_backend": backend}
        if backend == "btrfs":
            settings["storage_pool_size_mib"] = POOL_MIB
        settings.update(more_settings)
        agent = AgentProcess(
            root / f"agent-{len(nodes)}",
            {signing_key.kid: signing_key.public_text},
            settings=settings,
        )
        agent.start()
        api = SignedAgentClient(agent, signing_key, http)
        node = QuotaNode(agent, api, docker, defaults={"disk_mib": DISK_MIB}, backend=backend)
        nodes.append(node)
        return node

    try:
        yield make
    finally:
        for node in nodes:
            await node.remove_servers()
            node.agent.stop()
        release_everything_under(root)


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
