"""The world around a node for the egress tests: a bridge, a namespace beyond it, listeners.

:func:`outside_world` makes a network namespace that stands for everything outside the node,
joined to it by a veth pair: a public host (198.18.0.0/15 stands in for the internet), the cloud
metadata address, private hosts and two DNS servers. The routes to the metadata and private
addresses go in a routing table of their own, used only for traffic from the test bridge's
subnet (an ``ip rule``), so the host's own routes, and any real metadata service, are not
touched. :class:`Listeners` are TCP servers that answer with their name
(:mod:`tests.support.banner_server`); the ``answer_from*`` helpers read what a connection
gets, from inside a container, from the host, or from outside.
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
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import aiodocker

from node_agent.docker.hardening import game_container_name
from tests.support.agent_process import AgentProcess, SigningKey
from tests.support.containers import BUSYBOX_IMAGE, SignedAgentClient
from tests.support.factories import server_spec

REPO_ROOT: Final = Path(__file__).resolve().parents[3]
METADATA: Final = "169.254.169.254"
GAME_GREETING: Final = "fake-game here"
# busybox nc's connect timeout inside the container, in seconds.
CONNECT_TIMEOUT: Final = "2"
# What the DNS stubs answer for every name.
DNS_ANSWER: Final = "198.18.255.254"


def egress_world_unavailable() -> str | None:
    """Why the world cannot be built on this host (None: it can)."""
    if os.geteuid() != 0:
        return "needs root for network namespaces, routes and nftables"
    for tool in ("ip", "nft", "busybox"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None


def start_egress_agent(
    root: Path, bridge: Bridge, outside: Outside, key: SigningKey
) -> AgentProcess:
    """A started agent on ``bridge``: the ``allowed`` private host and one resolver allowed."""
    allowed, port = outside.listeners.where["allowed"]
    process = AgentProcess(
        root,
        {key.kid: key.public_text},
        settings={
            "storage_backend": "directory",
            "docker_network": bridge.name,
            "egress_allow": [f"{allowed} tcp/{port}"],
            "egress_dns": [outside.resolver],
        },
    )
    process.start()
    return process


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=30, check=check)


@dataclass(frozen=True)
class Bridge:
    name: str
    subnet: ipaddress.IPv4Network
    gateway: str


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


@contextlib.contextmanager
def outside_world(subnet: ipaddress.IPv4Network) -> Iterator[Outside]:
    """Build the namespace beyond the node, routed to from ``subnet`` only; tear it down."""
    tag = secrets.token_hex(3)
    netns, veth = f"steg-out-{tag}", f"steg{tag}h"
    link = ipaddress.ip_network("198.18.0.0/15")[4 * secrets.randbelow(2**15)]
    node_address, public_address = str(link + 1), str(link + 2)
    first_private = ipaddress.ip_address("10.77.0.0") + 4 * secrets.randbelow(16000)
    private, allowed, resolver, other_resolver = (str(first_private + n) for n in range(1, 5))
    remote = (METADATA, private, allowed, resolver, other_resolver)
    table = str(20000 + secrets.randbelow(10000))
    rule = ["from", str(subnet), "lookup", table, "priority", table]
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


@dataclass
class Games:
    """Game servers on the test's agent; every one is deleted at teardown."""

    api: SignedAgentClient
    created: list[uuid.UUID] = field(default_factory=list)

    async def start(self, allocations: list[dict[str, Any]]) -> str:
        """Create and start a game; the name of its container."""
        spec = server_spec(allocations=allocations)
        server_id = uuid.UUID(spec["uuid"])
        self.created.append(server_id)
        created = await self.api.create(spec)
        assert created.status == 201, created.body
        started = await self.api.power(server_id, "start")
        assert started.status == 200, started.body
        await eventually(lambda: self._running(server_id))
        return game_container_name(server_id)

    async def _running(self, server_id: uuid.UUID) -> bool:
        answer = await self.api.read(server_id)
        return bool(answer.status == 200 and (answer.body["container"] or {}).get("running"))


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
