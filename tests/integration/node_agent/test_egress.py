"""An attacker inside a game container: what can it reach on the node and around it?

A real agent (its own bridge network ``steg-<tag>``, so nothing else on this Docker engine is
touched) runs two games, A and B, created and started through its signed API. The test plays
the attacker with ``docker exec`` in A (busybox ``nc``, as the game's own user) against real
listeners (:mod:`tests.support.banner_server`) that answer with their name::

    A ──▶ bridge steg-<tag> ──▶ node ──veth──▶ namespace "outside" (the internet, 198.18.0.0/15)
          gateway G:                 198.18.n.1       198.18.n.2          a public host
            "agent" (the agent's     "node" (the      169.254.169.254:80  the cloud metadata
            port stands in here)     node's address)  10.77.x.y           a host on a private net

Only traffic from the test bridge's subnet is routed to the metadata and private addresses
(an ``ip rule`` with its own routing table), so the host's routes, and any real metadata
service, are untouched. Every "unreachable" has its positive control: the same listener is
reached once the agent's egress table is deleted, or, for B's container, from the host.
Namespaces, links, rules, listeners, containers, the network and the table are removed at
teardown, also when the test fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import secrets
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import aiodocker
import aiohttp
import pytest

from node_agent.docker.hardening import SERVER_LABEL, game_container_name
from node_agent.docker.network import ensure_agent_network
from tests.conftest import service_missing
from tests.support.agent_process import AgentProcess, SigningKey, free_port
from tests.support.containers import (
    BUSYBOX_IMAGE,
    FAKE_GAME_IMAGE,
    SignedAgentClient,
    build_test_images,
    remove_container,
)

REPO_ROOT: Final = Path(__file__).resolve().parents[3]
METADATA: Final = "169.254.169.254"
GAME_GREETING: Final = "fake-game here"
# busybox nc's connect timeout inside the container, in seconds.
CONNECT_TIMEOUT: Final = "2"
# What the DNS stubs answer for every name.
DNS_ANSWER: Final = "198.18.255.254"


def _unavailable() -> str | None:
    if os.geteuid() != 0:
        return "needs root for network namespaces, routes and nftables"
    for tool in ("ip", "nft", "busybox"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None


pytestmark = [
    pytest.mark.docker,
    pytest.mark.slow,
    pytest.mark.timeout(240),
    pytest.mark.skipif(bool(reason := _unavailable()), reason=reason or ""),
]


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=30, check=check)


def egress_table(bridge: str) -> str:
    """The table the agent keeps for a bridge other than the default one."""
    return f"stellar_egress_{bridge}"


@pytest.fixture(scope="module", autouse=True)
def test_images() -> None:
    if shutil.which("docker") is None or run("docker", "info", check=False).returncode != 0:
        service_missing("Docker engine not reachable (deploy/dev/ensure-services.sh docker)")
    build_test_images()


@pytest.fixture
async def docker() -> AsyncIterator[aiodocker.Docker]:
    client = aiodocker.Docker()
    try:
        yield client
    finally:
        await client.close()


@dataclass(frozen=True)
class Bridge:
    name: str
    subnet: ipaddress.IPv4Network
    gateway: str


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
        run("nft", "delete", "table", "inet", egress_table(name), check=False)


@dataclass
class Listeners:
    """Banner servers (in ``netns``, or on the host): name -> (address, port)."""

    process: subprocess.Popen[str]
    where: dict[str, tuple[str, int]] = field(default_factory=dict)

    @classmethod
    def start(cls, specs: dict[str, str], netns: str | None = None) -> Listeners:
        prefix = ["ip", "netns", "exec", netns] if netns else []
        process = subprocess.Popen(
            [*prefix, sys.executable, "-m", "tests.support.banner_server"]
            + [f"{name}={address}" for name, address in specs.items()],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=REPO_ROOT,
        )
        listeners = cls(process)
        assert process.stdout is not None
        while (line := process.stdout.readline().strip()) != "ready":
            if not line:
                listeners.stop()
                raise RuntimeError(f"banner server {specs} did not start")
            name, port = line.split()
            listeners.where[name] = (specs[name].partition("@")[0], int(port))
        return listeners

    def stop(self) -> None:
        stop_process(self.process)


@dataclass(frozen=True)
class Outside:
    """The namespace beyond the node, and the node's own address towards it."""

    netns: str
    node_address: str
    listeners: Listeners
    # Private addresses: a DNS server the agent is told about, one it is not.
    resolver: str
    other_resolver: str


@pytest.fixture
def outside(bridge: Bridge) -> Iterator[Outside]:
    tag = secrets.token_hex(3)
    netns, veth = f"steg-out-{tag}", f"steg{tag}h"
    link = ipaddress.ip_network("198.18.0.0/15")[4 * secrets.randbelow(2**15)]
    node_address, public_address = str(link + 1), str(link + 2)
    first_private = ipaddress.ip_address("10.77.0.0") + 4 * secrets.randbelow(16000)
    private, allowed, resolver, other_resolver = (str(first_private + n) for n in range(1, 5))
    remote = (METADATA, private, allowed, resolver, other_resolver)
    table = str(20000 + secrets.randbelow(10000))
    rule = ["from", str(bridge.subnet), "lookup", table, "priority", table]
    undo: list[list[str]] = []
    started: list[subprocess.Popen[str]] = []
    try:
        run("ip", "netns", "add", netns)
        undo.append(["ip", "netns", "del", netns])
        run("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns)
        undo.append(["ip", "link", "del", veth])
        run("ip", "addr", "add", f"{node_address}/30", "dev", veth)
        run("ip", "link", "set", veth, "up")
        run("ip", "-n", netns, "addr", "add", f"{public_address}/30", "dev", "eth0")
        for address in remote:
            run("ip", "-n", netns, "addr", "add", f"{address}/32", "dev", "eth0")
        run("ip", "-n", netns, "link", "set", "eth0", "up")
        run("ip", "-n", netns, "link", "set", "lo", "up")
        run("ip", "-n", netns, "route", "add", "default", "via", node_address)
        # Only the test bridge's traffic is routed to the stand-ins for remote hosts.
        undo.append(["ip", "route", "flush", "table", table])
        for address in remote:
            run("ip", "route", "add", address, "via", public_address, "dev", veth, "table", table)
        run("ip", "rule", "add", *rule)
        undo.append(["ip", "rule", "del", *rule])
        listeners = Listeners.start(
            {
                "metadata": f"{METADATA}@80",
                "private": private,
                "allowed": allowed,
                "public": public_address,
            },
            netns,
        )
        started.append(listeners.process)
        started.append(start_dns_stub(netns, resolver, other_resolver))
        yield Outside(netns, node_address, listeners, resolver, other_resolver)
    finally:
        for process in started:
            stop_process(process)
        for command in reversed(undo):
            run(*command, check=False)


def start_dns_stub(netns: str, *addresses: str) -> subprocess.Popen[str]:
    """DNS servers (tests.support.dns_stub) on ``addresses``, answering every name with ANSWER."""
    command = ["ip", "netns", "exec", netns, sys.executable, "-m", "tests.support.dns_stub"]
    process = subprocess.Popen(
        [*command, DNS_ANSWER, *addresses],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=REPO_ROOT,
    )
    assert process.stdout is not None
    if process.stdout.readline().strip() != "ready":
        stop_process(process)
        raise RuntimeError("the DNS stub did not start")
    return process


def stop_process(process: subprocess.Popen[str]) -> None:
    process.kill()
    process.wait()
    if process.stdout is not None:
        process.stdout.close()


@pytest.fixture
def node_listeners(bridge: Bridge, outside: Outside) -> Iterator[Listeners]:
    """Real listeners on the node's own addresses: the bridge gateway and the public side."""
    listeners = Listeners.start({"agent": bridge.gateway, "node": outside.node_address})
    try:
        yield listeners
    finally:
        listeners.stop()


@pytest.fixture
def agent(
    tmp_path: Path, bridge: Bridge, outside: Outside, key: SigningKey
) -> Iterator[AgentProcess]:
    """The agent on the test's bridge; one private host and one resolver are allowed."""
    allowed, port = outside.listeners.where["allowed"]
    process = AgentProcess(
        tmp_path / "agent",
        {key.kid: key.public_text},
        settings={
            "storage_backend": "directory",
            "docker_network": bridge.name,
            "egress_allow": [f"{allowed} tcp/{port}"],
            "egress_dns": [outside.resolver],
        },
    )
    process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def key() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture
async def api(agent: AgentProcess, key: SigningKey) -> AsyncIterator[SignedAgentClient]:
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=30)
    ) as http:
        yield SignedAgentClient(agent, key, http)


@dataclass
class Games:
    """Game servers on the test's agent; every one is deleted at teardown."""

    api: SignedAgentClient
    created: list[uuid.UUID] = field(default_factory=list)

    async def start(self, allocations: list[dict[str, Any]]) -> str:
        """Create and start a game; the name of its container."""
        server_id = uuid.uuid4()
        self.created.append(server_id)
        spec = {
            "uuid": str(server_id),
            "image": FAKE_GAME_IMAGE,
            "memory_mib": 64,
            "disk_mib": 256,
            "pids_limit": 64,
            "allocations": allocations,
            "stop": {"type": "command", "value": "stop"},
            "stop_timeout_seconds": 5,
        }
        created = await self.api.create(spec)
        assert created.status == 201, created.body
        started = await self.api.power(server_id, "start")
        assert started.status == 200, started.body
        await eventually(lambda: self._running(server_id))
        return game_container_name(server_id)

    async def _running(self, server_id: uuid.UUID) -> bool:
        answer = await self.api.read(server_id)
        return bool(answer.status == 200 and (answer.body["container"] or {}).get("running"))


@pytest.fixture
async def games(api: SignedAgentClient) -> AsyncIterator[Games]:
    handed_out = Games(api)
    try:
        yield handed_out
    finally:
        for server_id in handed_out.created:
            with contextlib.suppress(aiohttp.ClientError):
                await api.delete(server_id)


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout} s")
        await asyncio.sleep(0.2)


async def answer_from(docker: aiodocker.Docker, container: str, address: str, port: int) -> str:
    """What a TCP connection from inside ``container`` (as its user) to address:port reads."""
    command = ["nc", "-w", CONNECT_TIMEOUT, address, str(port)]
    execution = await docker.containers.container(container).exec(command)
    output = b""
    async with execution.start(detach=False) as stream:
        while (message := await stream.read_out()) is not None:
            output += message.data
    return output.decode("utf-8", "replace").strip()


async def answer_from_host(address: str, port: int) -> str:
    reader, writer = await asyncio.wait_for(asyncio.open_connection(address, port), 5)
    try:
        return (await asyncio.wait_for(reader.read(100), 5)).decode().strip()
    finally:
        writer.close()


def answer_from_outside(outside: Outside, address: str, port: int) -> str:
    command = ["ip", "netns", "exec", outside.netns, "busybox", "nc", "-w", "2", address]
    return run(*command, str(port), check=False).stdout.strip()


async def container_address(docker: aiodocker.Docker, container: str, bridge: Bridge) -> str:
    info = await docker.containers.container(container).show()
    return str(info["NetworkSettings"]["Networks"][bridge.name]["IPAddress"])


async def test_a_game_reaches_the_internet_and_published_ports_but_not_the_node_or_private_nets(
    docker: aiodocker.Docker,
    bridge: Bridge,
    outside: Outside,
    node_listeners: Listeners,
    agent: AgentProcess,
    games: Games,
) -> None:
    published = free_port()
    victim = await games.start(
        [
            {"ip": bridge.gateway, "port": published, "protocols": ["tcp"]},
            {"ip": outside.node_address, "port": published, "protocols": ["tcp"]},
        ]
    )
    attacker = await games.start([])
    victim_address = await container_address(docker, victim, bridge)
    far = outside.listeners.where
    near = node_listeners.where

    async def answer(address: str, port: int) -> str:
        return await answer_from(docker, attacker, address, port)

    async def answers(name: str, address: str, port: int) -> bool:
        return await answer(address, port) == name

    # Allowed: the internet, another game through its published port on the node, and the
    # one private host and port the operator listed in egress_allow.
    await eventually(lambda: answers("public", *far["public"]))
    assert await answer(*far["allowed"]) == "allowed"
    await eventually(lambda: answers(GAME_GREETING, bridge.gateway, published))
    assert answer_from_outside(outside, outside.node_address, published) == GAME_GREETING

    # Refused: the metadata service, a private network, the node itself, the other game.
    blocked = {
        "metadata": far["metadata"],
        "private": far["private"],
        "agent": near["agent"],
        "node": near["node"],
    }
    for name, (address, port) in blocked.items():
        assert name not in await answer(address, port), f"the game reached {name}"
    assert GAME_GREETING not in await answer(victim_address, published)

    # The table outlives the agent, as the games do. (Stopped, the agent also stops
    # rewriting it at every container event, which would race the deletion below.)
    agent.stop()
    assert "metadata" not in await answer(*far["metadata"])

    # Positive controls: the other game answers the host directly; without the agent's
    # table every other listener answers the game, so it was the policy that refused them.
    assert await answer_from_host(victim_address, published) == GAME_GREETING
    run("nft", "delete", "table", "inet", egress_table(bridge.name))
    for name, (address, port) in blocked.items():
        assert await answer(address, port) == name, f"{name} not reachable without the policy"


@pytest.fixture
async def plain_containers(docker: aiodocker.Docker) -> AsyncIterator[list[str]]:
    """Names of containers a test made itself (not through the agent); removed at teardown."""
    names: list[str] = []
    try:
        yield names
    finally:
        for name in names:
            await remove_container(docker.containers.container(name))


async def resolver_user(
    docker: aiodocker.Docker, bridge: Bridge, resolver: str, names: list[str]
) -> str:
    """A container on the bridge whose DNS (dockerd's, at 127.0.0.11) forwards to ``resolver``."""
    name = f"steg-dns-{secrets.token_hex(4)}"
    names.append(name)
    container = await docker.containers.create(
        {
            "Image": BUSYBOX_IMAGE,
            "Cmd": ["sleep", "600"],
            "User": "1000:1000",
            "HostConfig": {"NetworkMode": bridge.name, "Dns": [resolver], "CapDrop": ["ALL"]},
        },
        name=name,
    )
    await container.start()
    return name


async def lookup(docker: aiodocker.Docker, container: str) -> str:
    execution = await docker.containers.container(container).exec(
        ["nslookup", "egress-check.example"]
    )
    output = b""
    async with execution.start(detach=False) as stream:
        while (message := await stream.read_out()) is not None:
            output += message.data
    return output.decode("utf-8", "replace")


async def test_games_resolve_names_through_a_private_resolver_the_agent_was_given(
    docker: aiodocker.Docker,
    bridge: Bridge,
    outside: Outside,
    agent: AgentProcess,
    plain_containers: list[str],
) -> None:
    # dockerd forwards the query from the container's namespace: through the bridge, to a
    # private address, which only egress_dns lets through.
    given = await resolver_user(docker, bridge, outside.resolver, plain_containers)
    other = await resolver_user(docker, bridge, outside.other_resolver, plain_containers)
    assert DNS_ANSWER in await lookup(docker, given)
    assert DNS_ANSWER not in await lookup(docker, other)

    # Positive control: without the agent's table the other resolver answers too.
    agent.stop()
    run("nft", "delete", "table", "inet", egress_table(bridge.name))
    assert DNS_ANSWER in await lookup(docker, other)
