"""Fixtures that run real agent processes; every one is stopped at teardown."""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiodocker
import aiohttp
import pytest

from node_agent.docker.hardening import SERVER_LABEL
from node_agent.docker.network import ensure_agent_network
from node_agent.egress.policy import table_name
from tests.integration.node_agent.egress_world import (
    Bridge,
    Listeners,
    Outside,
    outside_world,
    run,
)
from tests.integration.node_agent.files_client import FilesClient
from tests.integration.node_agent.live_agent import LiveAgent, LiveServers, start_live_agent
from tests.integration.node_agent.quota_nodes import NodeFactory, QuotaNode, quota_nodes
from tests.integration.node_agent.sftp_client import SftpTarget, UserKey, sftp_target
from tests.support.agent_process import AgentFactory, AgentProcess, SigningKey
from tests.support.containers import remove_container


def _started(root: Path, key: SigningKey) -> AgentProcess:
    agent = AgentProcess(root, {key.kid: key.public_text})
    agent.start()
    return agent


@pytest.fixture(scope="module")
def agent(
    tmp_path_factory: pytest.TempPathFactory, signing_key: SigningKey
) -> Iterator[AgentProcess]:
    """One agent shared by the tests of a module (tests tell their requests apart by id)."""
    process = _started(tmp_path_factory.mktemp("agent-a"), signing_key)
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def other_agent(
    tmp_path_factory: pytest.TempPathFactory, signing_key: SigningKey
) -> Iterator[AgentProcess]:
    """A second node that trusts the same key as ``agent``."""
    process = _started(tmp_path_factory.mktemp("agent-b"), signing_key)
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def agent_factory(tmp_path: Path, signing_key: SigningKey) -> Iterator[AgentFactory]:
    """Start agents of this test's own (restart, kill, ...); all are stopped at teardown."""
    started: list[AgentProcess] = []

    def make() -> AgentProcess:
        process = _started(tmp_path / f"agent-{len(started)}", signing_key)
        started.append(process)
        return process

    try:
        yield make
    finally:
        for process in started:
            process.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A client that opens a new connection per request, so a restarted agent is no surprise."""
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=10)
    ) as session:
        yield session


# Live agents: games in real containers, with the live tests' console and file limits.


@pytest.fixture(scope="module")
def module_live_agent(
    tmp_path_factory: pytest.TempPathFactory, signing_key: SigningKey
) -> Iterator[LiveAgent]:
    """One live agent shared by the tests of a module."""
    agent = start_live_agent(tmp_path_factory.mktemp("live-agent"), signing_key)
    try:
        yield agent
    finally:
        agent.stop()


@pytest.fixture
def live_agent(
    request: pytest.FixtureRequest, tmp_path: Path, signing_key: SigningKey
) -> Iterator[LiveAgent]:
    """The agent a test's games run on: its module's, or with the ``own_agent`` marker one of
    the test's own (which it may stop or kill), the marker's keywords added to its settings."""
    own = request.node.get_closest_marker("own_agent")
    if own is None:
        shared: LiveAgent = request.getfixturevalue("module_live_agent")
        yield shared
        return
    agent = start_live_agent(tmp_path / "agent", signing_key, **own.kwargs)
    try:
        yield agent
    finally:
        agent.stop()


@pytest.fixture
def api(live_agent: LiveAgent, signing_key: SigningKey, http: aiohttp.ClientSession) -> FilesClient:
    """The signed client for ``live_agent``, file routes included."""
    return FilesClient(live_agent, signing_key, http)


@pytest.fixture
async def servers(
    live_agent: LiveAgent, api: FilesClient, docker: aiodocker.Docker
) -> AsyncIterator[LiveServers]:
    """Hands out servers on ``live_agent``; every one is deleted at teardown."""
    handed_out = LiveServers(live_agent, api, docker)
    try:
        yield handed_out
    finally:
        await handed_out.cleanup()


# Agents on a kernel-enforced disk backend (modules marked needs_root_to_mount).


@pytest.fixture
async def node_factory(
    tmp_path: Path,
    signing_key: SigningKey,
    http: aiohttp.ClientSession,
    docker: aiodocker.Docker,
) -> AsyncIterator[NodeFactory]:
    """Start agents with a kernel-enforced backend; undo everything they made at teardown."""
    async with quota_nodes(tmp_path, signing_key, http, docker) as make:
        yield make


@pytest.fixture(params=["btrfs", "ext4"])
def node(request: pytest.FixtureRequest, node_factory: NodeFactory) -> QuotaNode:
    """An agent on each kernel-enforced backend."""
    return node_factory(str(request.param))


# The world around a node for egress tests (egress_world.py; they need root, ip and nft).


@pytest.fixture
async def bridge(docker: aiodocker.Docker) -> AsyncIterator[Bridge]:
    """The test's own agent network, made as the agent makes it; removed with its table."""
    name = f"steg-{secrets.token_hex(3)}"
    await ensure_agent_network(docker, name)
    try:
        info = await (await docker.networks.get(name)).show()
        ipam = info["IPAM"]["Config"][0]
        yield Bridge(name, ipaddress.IPv4Network(ipam["Subnet"]), ipam["Gateway"])
    finally:
        for container in await docker.containers.list(
            all=True, filters={"network": [name], "label": [SERVER_LABEL]}
        ):
            await remove_container(container)
        await (await docker.networks.get(name)).delete()
        run("nft", "delete", "table", "inet", table_name(name), check=False)


@pytest.fixture
def outside(bridge: Bridge) -> Iterator[Outside]:
    with outside_world(bridge.subnet) as world:
        yield world


@pytest.fixture
def node_listeners(bridge: Bridge, outside: Outside) -> Iterator[Listeners]:
    """Real listeners on the node's own addresses: the bridge gateway and the public side."""
    listeners = Listeners.start({"agent": bridge.gateway, "node": outside.node_address})
    try:
        yield listeners
    finally:
        listeners.stop()


@pytest.fixture
async def target(
    live_agent: LiveAgent, signing_key: SigningKey, http: aiohttp.ClientSession, tmp_path: Path
) -> SftpTarget:
    """The test's live agent as an SFTP client sees it (its port, its host key)."""
    return await sftp_target(live_agent, signing_key, http, tmp_path / "ssh")


@pytest.fixture
def key(tmp_path: Path) -> UserKey:
    """A fresh SSH key pair for an SFTP user."""
    return UserKey.make(tmp_path / "keys")
