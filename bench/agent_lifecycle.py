"""What running game servers through the agent costs: create+start, console output, memory.

Run ``python bench/agent_lifecycle.py`` as root with dockerd running (``--help`` for the
options). It builds the local test images (``deploy/dev/build-test-images.sh``) and starts
real ``python -m node_agent serve`` processes on free loopback ports. In one run it measures

1. create+start latency of a fake-game server through the agent: signed
   ``PUT /api/v1/servers/{id}`` then ``POST .../power {"action": "start"}``, which answers
   once the container runs; against the same work done directly with aiodocker in this
   process: the volume made by the agent's own volume class, then the container create
   body built by the agent's own builder (``game_container_config``: same image, hardening,
   seccomp profile, network) created, started and inspected until it runs. The first pair
   of containers is inspected to show that both got the same spec. Volume creation is
   reported on its own line. Done with the ``directory`` backend and, when running as root
   with btrfs usable, with the ``btrfs`` backend too (a small pool image in the temporary
   directory, for the agent and for this process). Agent and direct runs alternate; each
   server is deleted after it is measured (not timed);
2. console throughput: a running game's container writes ``--console-lines`` numbered lines
   to its PID 1's stdout (``docker exec ... seq N > /proc/1/fd/1``), and lines received per
   second are counted at a WebSocket client of the agent's console (signed token for GET of
   the console path), with the per-server cap raised out of the way (``[console]``
   ``lines_per_second``) and with the default cap; against the same burst followed straight
   from dockerd with the agent's own ``follow_output``;
3. the agent's resident memory (``VmRSS``) on a fresh agent with the default config: idle
   with no server, then idle with ``--servers`` servers created and running.

It prints figures and asserts nothing about time. Everything it made goes away at the end,
on errors and on SIGTERM too: the containers (found by the servers' labels), the agents,
the volumes, the btrfs pools' mounts and loop devices, the temporary directory, and the
agent network if this run created it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Final

import aiodocker
import aiohttp
import structlog

from node_agent.docker.containers import ContainerRuntime
from node_agent.docker.hardening import (
    MANAGED_LABEL,
    SERVER_LABEL,
    ContainerPlacement,
    game_container_config,
    game_container_name,
)
from node_agent.docker.network import AGENT_NETWORK, AgentNetwork, ensure_agent_network
from node_agent.docker.output import follow_output
from node_agent.docker.seccomp import DOCKER_DEFAULT_PROFILE, SeccompProfile
from node_agent.docker.seccomp_context import INSPECTION_FILE
from node_agent.servers.records import RecordStore, ServerRecord
from node_agent.settings import AgentSettings, ConfigError
from node_agent.storage.backend import NodeStorage, open_storage
from node_agent.storage.context import game_user_ids
from shared.protocol import mint
from shared.server_spec import ServerSpec

# The test suite's agent and Docker helpers are reused; they live in the repository, which
# is not on the path when this file is run as a script.
REPO_ROOT: Final = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.support.agent_process import AgentProcess, SigningKey, free_port  # noqa: E402
from tests.support.containers import (  # noqa: E402
    FAKE_GAME_IMAGE,
    SignedAgentClient,
    build_test_images,
)
from tests.support.storage import (  # noqa: E402
    loop_devices_under,
    mounts_under,
    release_everything_under,
)

TARGET_RATIO: Final = 1.15
POOL_MIB: Final = 256
REQUEST_TIMEOUT_SECONDS: Final = 60.0
# A console burst is over when nothing arrived for this long after the writer finished.
CONSOLE_IDLE_SECONDS: Final = 2.0
CONSOLE_MAX_SECONDS: Final = 60.0
THROTTLE_PREFIX: Final = "[stellar] output throttled: "
# The console limits of the uncapped agent: the highest the agent accepts.
UNCAPPED_CONSOLE: Final[dict[str, int | float]] = {
    "lines_per_second": 100_000,
    "viewer_queue_messages": 100_000,
}
RSS_SETTLE_SECONDS: Final = 8.0
STEP_REPEATS: Final = 20
# What one create+start through the agent does that the direct path does not (counted in
# node_agent/servers/): PUT ensures the network (two GETs), inspects
# the image twice, inspects the new container and answers a status (inspect), and saves the
# record; POST power saves the record, finds the container, inspects it after the start and
# answers a status. Plus a signed token per request.
EXTRA_STEPS: Final[dict[str, int]] = {
    "network ensure (2 GETs)": 1,
    "image inspect": 2,
    "container inspect": 4,
    "record save (fsync)": 2,
    "mint token (client)": 2,
}

Sample = list[float]  # milliseconds unless said otherwise


# --------------------------------------------------------------------------- statistics


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (``pct`` in 0..100) of a non-empty sample."""
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


# --------------------------------------------------------------------------- agents


@dataclass
class BenchAgent(AgentProcess):
    """An agent process whose config may also carry a ``[console]`` table."""

    console: dict[str, int | float] = field(default_factory=dict)

    def write_config(self) -> Path:
        path = super().write_config()
        if self.console:
            table = "".join(f"{name} = {value}\n" for name, value in self.console.items())
            path.write_text(path.read_text(encoding="utf-8") + "\n[console]\n" + table)
        return path

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError("the agent is not running")
        return self._process.pid

    def volume_path(self, backend: str, server_id: uuid.UUID) -> Path:
        """Where this agent keeps a server's volume (the default pool and volumes dirs)."""
        if backend == "btrfs":
            return self.data_dir / "pool" / str(server_id)
        return self.data_dir / "volumes" / str(server_id)

    def seccomp(self) -> SeccompProfile | None:
        """The game seccomp profile this agent applies (None: Docker's default profile)."""
        written = self.data_dir / INSPECTION_FILE
        if not written.exists():
            return None
        text = written.read_text(encoding="utf-8").removesuffix("\n")
        return SeccompProfile(text, DOCKER_DEFAULT_PROFILE)


def rss_kib(pid: int) -> int:
    """VmRSS of ``pid`` in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


async def settled_rss(pid: int) -> int:
    """VmRSS once two readings half a second apart agree within 0.5 % (or after a while)."""
    deadline = time.monotonic() + RSS_SETTLE_SECONDS
    previous = rss_kib(pid)
    while True:
        await asyncio.sleep(0.5)
        current = rss_kib(pid)
        if abs(current - previous) <= max(previous // 200, 64) or time.monotonic() > deadline:
            return current
        previous = current


# --------------------------------------------------------------------------- everything made


@dataclass
class Made:
    """What this run created, so that it can all be removed whatever happens."""

    root: Path
    agents: list[BenchAgent] = field(default_factory=list)
    servers: set[uuid.UUID] = field(default_factory=set)
    storages: list[NodeStorage] = field(default_factory=list)
    created_network: bool = False

    async def release(self, docker: aiodocker.Docker) -> list[str]:
        """Remove containers, stop agents, unmount; returns what could not be undone."""
        problems: list[str] = []
        if self.servers:
            try:
                found = await docker.containers.list(
                    all=True, filters={"label": [f"{MANAGED_LABEL}=true"]}
                )
                for container in found:
                    labels = container["Labels"] or {}
                    if labels.get(SERVER_LABEL) in {str(s) for s in self.servers}:
                        await container.delete(force=True, v=True)
            except (aiodocker.DockerError, aiohttp.ClientError, OSError) as err:
                problems.append(f"containers not removed: {err}")
        self.stop_agents()
        for storage in self.storages:
            try:
                await storage.close(unmount=True)
            except Exception as err:  # the sync safety net below tries again
                problems.append(f"storage not closed: {err}")
        self.storages.clear()
        if self.created_network:
            try:
                network = await docker.networks.get(AGENT_NETWORK)
                info = await network.show()
                if not info.get("Containers"):
                    await network.delete()
                    self.created_network = False
            except (aiodocker.DockerError, aiohttp.ClientError, OSError) as err:
                problems.append(f"network {AGENT_NETWORK} not removed: {err}")
        return problems

    def stop_agents(self) -> None:
        for agent in self.agents:
            agent.stop()

    def release_mounts(self) -> list[str]:
        """Unmount and detach whatever is still under the root (the synchronous safety net)."""
        release_everything_under(self.root)
        left = [str(p) for p in mounts_under(self.root)] + loop_devices_under(self.root)
        return [f"still mounted or attached: {', '.join(left)}"] if left else []


# --------------------------------------------------------------------------- servers


def server_body(server_id: uuid.UUID) -> dict[str, Any]:
    """A fake-game server, as the integration tests create them."""
    return {
        "uuid": str(server_id),
        "image": FAKE_GAME_IMAGE,
        "memory_mib": 64,
        "swap_mib": 0,
        "cpu_percent": 50,
        "disk_mib": 64,
        "pids_limit": 64,
        "allocations": [{"ip": "127.0.0.1", "port": free_port()}],
        "stop": {"type": "command", "value": "stop"},
        "stop_timeout_seconds": 5,
    }


@dataclass
class AgentSide:
    """Create+start through one agent's signed HTTP API."""

    agent: BenchAgent
    api: SignedAgentClient
    made: Made

    async def create_start(self, body: dict[str, Any]) -> dict[str, float]:
        server_id = uuid.UUID(body["uuid"])
        self.made.servers.add(server_id)
        start = time.perf_counter()
        answer = await self.api.create(body)
        created = time.perf_counter()
        if answer.status != 201:
            raise RuntimeError(f"create answered {answer.status}: {answer.body}")
        answer = await self.api.power(server_id, "start")
        done = time.perf_counter()
        if answer.status != 200 or answer.body["state"] != "running":
            raise RuntimeError(f"start answered {answer.status}: {answer.body}")
        return {
            "total": (done - start) * 1000,
            "create": (created - start) * 1000,
            "start": (done - created) * 1000,
        }

    async def remove(self, server_id: uuid.UUID) -> None:
        answer = await self.api.delete(server_id)
        if answer.status != 204:
            raise RuntimeError(f"delete answered {answer.status}: {answer.body}")


@dataclass
class DirectSide:
    """The same containers created with aiodocker here, from the agent's own builders."""

    docker: aiodocker.Docker
    storage: NodeStorage
    network: AgentNetwork
    seccomp: SeccompProfile | None
    made: Made

    async def create_start(self, body: dict[str, Any]) -> dict[str, float]:
        spec = ServerSpec.model_validate(body)
        self.made.servers.add(spec.uuid)
        volume = self.storage.volume(spec.uuid)
        start = time.perf_counter()
        await volume.create(spec.disk_mib)
        made_volume = time.perf_counter()
        config = game_container_config(
            spec, ContainerPlacement(self.network.name, volume.path), self.seccomp
        )
        container = await self.docker.containers.create(config, name=game_container_name(spec.uuid))
        created = time.perf_counter()
        await container.start()
        started = time.perf_counter()
        info = await container.show()
        done = time.perf_counter()
        if not info["State"]["Running"]:
            raise RuntimeError(f"direct container not running: {info['State']}")
        return {
            "total": (done - start) * 1000,
            "volume": (made_volume - start) * 1000,
            "create": (created - made_volume) * 1000,
            "start": (started - created) * 1000,
            "inspect": (done - started) * 1000,
        }

    async def remove(self, server_id: uuid.UUID) -> None:
        with contextlib.suppress(aiodocker.DockerError):
            await self.docker.containers.container(game_container_name(server_id)).delete(
                force=True, v=True
            )
        await self.storage.volume(server_id).remove()


def _normalized(info: dict[str, Any], body: dict[str, Any], volume: Path) -> dict[str, Any]:
    """Config and HostConfig of an inspected container with what differs per server masked."""
    config = dict(info["Config"])
    config.pop("Hostname", None)
    text = json.dumps({"Config": config, "HostConfig": info["HostConfig"]}, sort_keys=True)
    port = body["allocations"][0]["port"]
    for old, new in (
        (str(volume), "<volume>"),
        (body["uuid"], "<uuid>"),
        (f'"{port}/', '"<port>/'),
        (f'"HostPort": "{port}"', '"HostPort": "<port>"'),
        (f"SERVER_PORT={port}", "SERVER_PORT=<port>"),
    ):
        text = text.replace(old, new)
    normalized: dict[str, Any] = json.loads(text)
    return normalized


async def spec_difference(
    docker: aiodocker.Docker,
    pair: Sequence[tuple[dict[str, Any], Path]],
) -> list[str]:
    """Keys of Config/HostConfig in which the agent's and the direct container differ."""
    shapes = []
    for body, volume in pair:
        name = game_container_name(uuid.UUID(body["uuid"]))
        info = await docker.containers.container(name).show()
        shapes.append(_normalized(info, body, volume))
    agent, direct = shapes
    return [
        f"{part}.{key}"
        for part in ("Config", "HostConfig")
        for key in sorted(set(agent[part]) | set(direct[part]))
        if agent[part].get(key) != direct[part].get(key)
    ]


@dataclass
class Lifecycle:
    """Create+start samples of one backend: through the agent and directly."""

    backend: str
    agent: dict[str, Sample] = field(default_factory=dict)
    direct: dict[str, Sample] = field(default_factory=dict)
    agent_side: dict[str, Sample] = field(default_factory=dict)
    spec_differs: list[str] | None = None
    measured: set[uuid.UUID] = field(default_factory=set)
    steps: dict[str, Sample] = field(default_factory=dict)


def _add(target: dict[str, Sample], timings: dict[str, float]) -> None:
    for name, value in timings.items():
        target.setdefault(name, []).append(value)


async def bench_lifecycle(
    backend: str,
    agent_side: AgentSide,
    direct_side: DirectSide,
    docker: aiodocker.Docker,
    iterations: int,
) -> Lifecycle:
    """One warm-up pair, then ``iterations`` pairs in alternating order."""
    result = Lifecycle(backend)
    sides: list[tuple[str, AgentSide | DirectSide]] = [
        ("agent", agent_side),
        ("direct", direct_side),
    ]
    for round_ in range(iterations + 1):
        order = sides if round_ % 2 == 0 else sides[::-1]
        bodies: dict[str, dict[str, Any]] = {}
        for name, side in order:
            body = server_body(uuid.uuid4())
            bodies[name] = body
            timings = await side.create_start(body)
            if round_ > 0:
                _add(result.agent if name == "agent" else result.direct, timings)
                if name == "agent":
                    result.measured.add(uuid.UUID(body["uuid"]))
        if round_ == 1:
            pair = [
                (
                    bodies["agent"],
                    agent_side.agent.volume_path(backend, uuid.UUID(bodies["agent"]["uuid"])),
                ),
                (
                    bodies["direct"],
                    direct_side.storage.volume(uuid.UUID(bodies["direct"]["uuid"])).path,
                ),
            ]
            result.spec_differs = await spec_difference(docker, pair)
            result.steps = await extra_steps(
                agent_side,
                docker,
                game_container_name(uuid.UUID(bodies["direct"]["uuid"])),
                agent_side.made.root / f"records-{backend}",
            )
        for name, side in order:
            await side.remove(uuid.UUID(bodies[name]["uuid"]))
    result.agent_side = agent_request_durations(agent_side.agent, result.measured)
    return result


async def extra_steps(
    side: AgentSide, docker: aiodocker.Docker, container: str, records_dir: Path
) -> dict[str, Sample]:
    """Each step the agent adds to a create+start, timed alone with the agent's own code."""
    runtime = ContainerRuntime(docker)
    records = RecordStore(records_dir)
    record = ServerRecord(spec=ServerSpec.model_validate(server_body(uuid.uuid4())))
    key = side.api.key

    def token() -> None:
        mint(
            private_key=key.private_key,
            kid=key.kid,
            issuer=side.agent.expected_issuer,
            node_id=side.agent.node_id,
            subject=f"server:{record.spec.uuid}",
            action="server.power",
            method="POST",
            path=f"/api/v1/servers/{record.spec.uuid}/power",
            body=b'{"action": "start"}',
            user="bench",
        )

    async def mint_token() -> None:
        token()

    async def network() -> None:
        await ensure_agent_network(docker)

    steps: dict[str, Callable[[], Awaitable[object]]] = {
        "network ensure (2 GETs)": network,
        "image inspect": lambda: runtime.ensure_image(FAKE_GAME_IMAGE),
        "container inspect": lambda: runtime.inspect(container),
        "record save (fsync)": lambda: records.save(record),
        "mint token (client)": mint_token,
    }
    samples: dict[str, Sample] = {name: [] for name in steps}
    for _ in range(STEP_REPEATS):
        for name, step in steps.items():
            start = time.perf_counter()
            await step()
            samples[name].append((time.perf_counter() - start) * 1000)
    return samples


def agent_request_durations(agent: AgentProcess, servers: set[uuid.UUID]) -> dict[str, Sample]:
    """The agent's own ``duration_ms`` for the measured servers' PUT and power requests."""
    found: dict[str, Sample] = {"create": [], "start": []}
    for event in agent.log_events():
        if event.get("event") != "request" or event.get("status") not in {200, 201}:
            continue
        path = str(event.get("path", ""))
        parts = path.split("/")
        if len(parts) < 5 or parts[3] != "servers":
            continue
        try:
            server_id = uuid.UUID(parts[4])
        except ValueError:
            continue
        if server_id not in servers:
            continue
        if event.get("method") == "PUT" and len(parts) == 5:
            found["create"].append(float(event["duration_ms"]))
        elif event.get("method") == "POST" and path.endswith("/power"):
            found["start"].append(float(event["duration_ms"]))
    return found


# --------------------------------------------------------------------------- console


@dataclass
class Burst:
    """One burst of numbered lines: what was written, what arrived, and when."""

    written: int
    write_seconds: float = 0.0
    received: int = 0
    throttled: int = 0
    first_at: float | None = None
    last_at: float | None = None
    started_at: float = 0.0

    def seen(self, now: float) -> None:
        if self.first_at is None:
            self.first_at = now
        self.last_at = now

    @property
    def span(self) -> float:
        if self.first_at is None or self.last_at is None:
            return 0.0
        return self.last_at - self.first_at

    @property
    def lines_per_second(self) -> float:
        return self.received / self.span if self.span > 0 else 0.0

    @property
    def lost(self) -> int:
        return self.written - self.received - self.throttled


def burst_script(lines: int, spread_seconds: float) -> tuple[str, int]:
    """The writer's shell command and how many lines it prints: all at once, or in tenths
    of a second spread over ``spread_seconds`` (so that a per-second cap shows its rate)."""
    if spread_seconds <= 0:
        return f"seq 1 {lines} > /proc/1/fd/1", lines
    steps = max(1, round(spread_seconds * 10))
    chunk = math.ceil(lines / steps)
    script = (
        f"i=0; while [ $i -lt {steps} ]; do seq $((i*{chunk}+1)) $(((i+1)*{chunk}));"
        " sleep 0.1; i=$((i+1)); done > /proc/1/fd/1"
    )
    return script, steps * chunk


async def write_burst(docker: aiodocker.Docker, name: str, script: str) -> float:
    """Run ``script`` in the game container (as the game user); seconds it took."""
    execution = await docker.containers.container(name).exec(["sh", "-c", script])
    start = time.perf_counter()
    async with execution.start(detach=False) as stream:
        output = b""
        while (message := await stream.read_out()) is not None:
            output += message.data
    seconds = time.perf_counter() - start
    inspected = await execution.inspect()
    if inspected["ExitCode"] != 0:
        raise RuntimeError(f"burst writer failed ({inspected['ExitCode']}): {output[:300]!r}")
    return seconds


async def await_burst(burst: Burst, writer: asyncio.Task[float]) -> None:
    """Until every line is accounted for, or nothing came for a while after the writer."""
    deadline = time.monotonic() + CONSOLE_MAX_SECONDS
    while time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        if not writer.done():
            continue
        burst.write_seconds = writer.result()
        if burst.received + burst.throttled >= burst.written:
            return
        last = burst.last_at if burst.last_at is not None else burst.started_at
        if time.perf_counter() - max(last, burst.started_at + burst.write_seconds) > (
            CONSOLE_IDLE_SECONDS
        ):
            return


def count_frame(burst: Burst, data: str) -> None:
    frame = json.loads(data)
    if frame.get("event") != "console output":
        return
    text = frame["args"][0]
    if text.isdigit():
        burst.received += 1
        burst.seen(time.perf_counter())
    elif text.startswith(THROTTLE_PREFIX):
        burst.throttled += int(text.removeprefix(THROTTLE_PREFIX).split()[0])
        burst.seen(time.perf_counter())


async def console_through_agent(
    side: AgentSide,
    docker: aiodocker.Docker,
    http: aiohttp.ClientSession,
    lines: int,
    spread_seconds: float = 0.0,
) -> Burst:
    """A burst from a game started through ``side``'s agent, counted at its console socket."""
    body = server_body(uuid.uuid4())
    server_id = uuid.UUID(body["uuid"])
    await side.create_start(body)
    try:
        path = f"/api/v1/servers/{server_id}/console"
        token = mint(
            private_key=side.api.key.private_key,
            kid=side.api.key.kid,
            issuer=side.agent.expected_issuer,
            node_id=side.agent.node_id,
            subject=f"server:{server_id}",
            action="server.console",
            method="GET",
            path=path,
            body=b"",
            user="bench",
            lifetime=60,
        )
        script, written = burst_script(lines, spread_seconds)
        burst = Burst(written)
        async with http.ws_connect(
            side.agent.base_url + path,
            headers={"Authorization": f"Bearer {token}"},
            max_msg_size=0,
        ) as ws:

            async def read() -> None:
                async for message in ws:
                    if message.type == aiohttp.WSMsgType.TEXT:
                        count_frame(burst, message.data)

            reader = asyncio.create_task(read())
            await asyncio.sleep(0.5)  # the game's first line and the status arrive first
            burst.started_at = time.perf_counter()
            writer = asyncio.create_task(
                write_burst(docker, game_container_name(server_id), script)
            )
            try:
                await await_burst(burst, writer)
            finally:
                writer.cancel()
                reader.cancel()
                await asyncio.gather(writer, reader, return_exceptions=True)
        return burst
    finally:
        await side.remove(server_id)


async def console_direct(side: DirectSide, docker: aiodocker.Docker, lines: int) -> Burst:
    """The same burst followed straight from dockerd with the agent's ``follow_output``."""
    body = server_body(uuid.uuid4())
    server_id = uuid.UUID(body["uuid"])
    await side.create_start(body)
    try:
        script, written = burst_script(lines, 0.0)
        burst = Burst(written)
        name = game_container_name(server_id)

        async def read() -> None:
            async for line in follow_output(docker, name, since=None, tail=None):
                if line.text.isdigit():
                    burst.received += 1
                    burst.seen(time.perf_counter())

        reader = asyncio.create_task(read())
        await asyncio.sleep(0.5)
        burst.started_at = time.perf_counter()
        writer = asyncio.create_task(write_burst(docker, name, script))
        try:
            await await_burst(burst, writer)
        finally:
            writer.cancel()
            reader.cancel()
            await asyncio.gather(writer, reader, return_exceptions=True)
        return burst
    finally:
        await side.remove(server_id)


# --------------------------------------------------------------------------- memory


@dataclass
class Memory:
    servers: int
    idle_kib: int = 0
    loaded_kib: int = 0
    after_delete_kib: int = 0
    setup_seconds: float = 0.0


async def bench_memory(side: AgentSide, servers: int) -> Memory:
    """VmRSS of a fresh agent idle, with ``servers`` running, and after deleting them."""
    memory = Memory(servers)
    memory.idle_kib = await settled_rss(side.agent.pid)
    ids = []
    start = time.perf_counter()
    try:
        for _ in range(servers):
            body = server_body(uuid.uuid4())
            ids.append(uuid.UUID(body["uuid"]))
            await side.create_start(body)
        memory.setup_seconds = time.perf_counter() - start
        await asyncio.sleep(1.0)
        memory.loaded_kib = await settled_rss(side.agent.pid)
    finally:
        for server_id in ids:
            with contextlib.suppress(RuntimeError, aiohttp.ClientError):
                await side.remove(server_id)
    memory.after_delete_kib = await settled_rss(side.agent.pid)
    return memory


# --------------------------------------------------------------------------- set-up


def btrfs_problem() -> str | None:
    """Why the btrfs backend cannot be benchmarked here, or None."""
    if os.geteuid() != 0:
        return "not running as root"
    missing = [tool for tool in ("btrfs", "mkfs.btrfs", "losetup") if shutil.which(tool) is None]
    if missing:
        return f"missing {', '.join(missing)}"
    if "btrfs" not in Path("/proc/filesystems").read_text(encoding="ascii").split():
        return "the kernel has no btrfs"
    return None


async def local_storage(root: Path, backend: str, key: SigningKey, made: Made) -> NodeStorage:
    """The agent's own storage backend, opened in this process under ``root``."""
    settings = AgentSettings(
        node_id=uuid.uuid4(),
        data_dir=root,
        trusted_keys={key.kid: key.public_text},
        storage_backend="btrfs" if backend == "btrfs" else "directory",
        storage_pool_size_mib=POOL_MIB,
    )
    storage = await open_storage(settings, *game_user_ids())
    made.storages.append(storage)
    return storage


def start_agent(
    made: Made, key: SigningKey, name: str, settings: dict[str, object], console: dict[str, Any]
) -> BenchAgent:
    agent = BenchAgent(
        made.root / name, {key.kid: key.public_text}, settings=settings, console=console
    )
    made.agents.append(agent)
    agent.start(timeout=30)
    return agent


# --------------------------------------------------------------------------- report


def row(name: str, sample: Sample) -> str:
    return (
        f"  {name:<42} {statistics.median(sample):>8.1f} {percentile(sample, 90):>8.1f}"
        f" {min(sample):>8.1f}"
    )


def report_lifecycle(result: Lifecycle) -> tuple[float, float]:
    agent, direct, side = result.agent, result.direct, result.agent_side
    print(f"create+start, {result.backend} backend, {len(agent['total'])} each (ms)")
    print(f"  {'':<42} {'median':>8} {'p90':>8} {'min':>8}")
    print(row("agent PUT + power start (signed HTTP)", agent["total"]))
    print(row("  PUT /servers/{id} (client)", agent["create"]))
    if side["create"]:
        print(row("    agent's own duration_ms", side["create"]))
    print(row("  POST .../power start (client)", agent["start"]))
    if side["start"]:
        print(row("    agent's own duration_ms", side["start"]))
    print(row("direct volume + create + start + inspect", direct["total"]))
    print(row("  volume create (agent's volume class)", direct["volume"]))
    print(row("  containers.create", direct["create"]))
    print(row("  container start", direct["start"]))
    print(row("  container inspect", direct["inspect"]))
    ratio = statistics.median(agent["total"]) / statistics.median(direct["total"])
    without_volume = [t - v for t, v in zip(direct["total"], direct["volume"], strict=True)]
    agent_containers = statistics.median(agent["total"]) - statistics.median(direct["volume"])
    container_ratio = agent_containers / statistics.median(without_volume)
    if result.spec_differs is None:
        same = "not compared"
    else:
        same = "yes" if not result.spec_differs else f"NO: {', '.join(result.spec_differs)}"
    print(f"  same container spec (inspected, per-server values masked): {same}")
    # Each agent run has a direct run beside it (same round): the median of their ratios is
    # less moved by load that comes and goes than the ratio of the two medians.
    paired = statistics.median(a / d for a, d in zip(agent["total"], direct["total"], strict=True))
    print(
        f"  ratio agent/direct median: {ratio:.2f} (volume excluded from both:"
        f" {container_ratio:.2f}; median of per-round ratios {paired:.2f});"
        f" target <= {TARGET_RATIO}"
    )
    if result.steps:
        observed = statistics.median(agent["total"]) - statistics.median(direct["total"])
        expected = sum(
            statistics.median(result.steps[name]) * count for name, count in EXTRA_STEPS.items()
        )
        parts = ", ".join(
            f"{count} x {name} {statistics.median(result.steps[name]):.2f}"
            for name, count in EXTRA_STEPS.items()
        )
        print(
            f"  agent's extra steps timed alone ({STEP_REPEATS} each, median ms): {parts};"
            f" sum {expected:.1f} ms vs observed median difference {observed:.1f} ms"
        )
    return ratio, paired


def report_burst(name: str, burst: Burst) -> None:
    lost = f"{burst.lost}" if burst.lost >= 0 else "?"
    print(
        f"  {name:<42} {burst.lines_per_second:>9.0f} {burst.received:>9} {burst.throttled:>9}"
        f" {lost:>6} {burst.span:>6.2f}"
        f" {burst.written / burst.write_seconds if burst.write_seconds else 0:>9.0f}"
    )


@dataclass
class Results:
    lifecycles: list[Lifecycle] = field(default_factory=list)
    btrfs_skipped: str | None = None
    bursts: list[tuple[str, Burst]] = field(default_factory=list)
    memory: Memory | None = None


def report(args: argparse.Namespace, results: Results, elapsed: float) -> None:
    print(
        f"agent lifecycle bench: iterations={args.iterations} console_lines={args.console_lines}"
        f" servers={args.servers}; python {platform.python_version()}, {os.cpu_count()} CPUs,"
        f" aiodocker {aiodocker.__version__}, aiohttp {aiohttp.__version__}"
    )
    ratios = [(r.backend, report_lifecycle(r)) for r in results.lifecycles]
    if results.btrfs_skipped:
        print(f"btrfs backend skipped: {results.btrfs_skipped}")
    if results.bursts:
        print(
            f"console: bursts of {args.console_lines} numbered lines on the game's stdout (seq >"
            f" /proc/1/fd/1), the default-cap one spread over {args.capped_seconds:g} s; lines/s"
            " = lines received / span from first to last frame"
        )
        print(
            f"  {'':<42} {'lines/s':>9} {'received':>9} {'throttled':>9} {'lost':>6}"
            f" {'span s':>6} {'written/s':>9}"
        )
        for name, burst in results.bursts:
            report_burst(name, burst)
        rates = dict(results.bursts)
        agent_rate = rates.get("agent console WS, cap raised")
        direct_rate = rates.get("direct follow_output (no agent)")
        if agent_rate and direct_rate and direct_rate.lines_per_second:
            print(
                "  ratio agent WS (cap raised) / direct follow:"
                f" {agent_rate.lines_per_second / direct_rate.lines_per_second:.2f}"
            )
    memory = results.memory
    if memory is not None:
        per_server = (memory.loaded_kib - memory.idle_kib) / memory.servers
        print(
            f"agent VmRSS (fresh agent, default config): idle {memory.idle_kib / 1024:.1f} MiB,"
            f" {memory.servers} servers running {memory.loaded_kib / 1024:.1f} MiB"
            f" (+{per_server:.0f} KiB per server), after deleting them"
            f" {memory.after_delete_kib / 1024:.1f} MiB; {memory.servers} created+started in"
            f" {memory.setup_seconds:.1f} s"
        )
    print(f"total bench time {elapsed:.1f} s")
    for backend, (ratio, paired) in ratios:
        print(
            f"ratio agent/direct median create+start ({backend}): {ratio:.2f}, median of"
            f" per-round ratios {paired:.2f} (target <= {TARGET_RATIO})"
        )


# --------------------------------------------------------------------------- main run


async def network_exists(docker: aiodocker.Docker) -> bool:
    try:
        await docker.networks.get(AGENT_NETWORK)
    except aiodocker.DockerError as err:
        if err.status == 404:
            return False
        raise
    return True


async def run(args: argparse.Namespace, made: Made) -> Results:
    results = Results()
    key = SigningKey.generate()
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS)
    docker = aiodocker.Docker()
    try:
        async with aiohttp.ClientSession(timeout=timeout) as http:
            made.created_network = not await network_exists(docker)
            network = await ensure_agent_network(docker)
            backends = ["directory"]
            results.btrfs_skipped = None if args.btrfs else "--no-btrfs"
            if args.btrfs:
                results.btrfs_skipped = btrfs_problem()
                if results.btrfs_skipped is None:
                    backends.append("btrfs")
            sides: dict[str, AgentSide] = {}
            for backend in backends:
                console = UNCAPPED_CONSOLE if backend == "directory" else {}
                settings: dict[str, object] = {"storage_backend": backend}
                if backend == "btrfs":
                    settings["storage_pool_size_mib"] = POOL_MIB
                agent = start_agent(made, key, f"agent-{backend}", settings, dict(console))
                side = AgentSide(agent, SignedAgentClient(agent, key, http), made)
                sides[backend] = side
                try:
                    storage = await local_storage(
                        made.root / f"direct-{backend}", backend, key, made
                    )
                except ConfigError as err:
                    if backend != "btrfs":
                        raise
                    results.btrfs_skipped = f"storage: {err}"
                    break
                direct = DirectSide(docker, storage, network, agent.seccomp(), made)
                results.lifecycles.append(
                    await bench_lifecycle(backend, side, direct, docker, args.iterations)
                )
                if backend == "directory" and args.console_lines:
                    results.bursts.append(
                        (
                            "agent console WS, cap raised",
                            await console_through_agent(side, docker, http, args.console_lines),
                        )
                    )
                    results.bursts.append(
                        (
                            "direct follow_output (no agent)",
                            await console_direct(direct, docker, args.console_lines),
                        )
                    )
                agent.stop()
            if args.servers:
                fresh = start_agent(made, key, "agent-memory", {"storage_backend": "directory"}, {})
                side = AgentSide(fresh, SignedAgentClient(fresh, key, http), made)
                results.memory = await bench_memory(side, args.servers)
                if args.console_lines:
                    results.bursts.append(
                        (
                            "agent console WS, default cap",
                            await console_through_agent(
                                side, docker, http, args.console_lines, args.capped_seconds
                            ),
                        )
                    )
                fresh.stop()
    finally:
        INTERRUPTS.cleaning = True
        problems = await made.release(docker)
        await docker.close()
        for problem in problems:
            print(f"cleanup: {problem}", file=sys.stderr)
    return results


# --------------------------------------------------------------------------- main


@dataclass
class Interrupts:
    """Where SIGTERM goes: the running bench task, nowhere while cleaning up, else SystemExit."""

    loop: asyncio.AbstractEventLoop | None = None
    task: asyncio.Task[Any] | None = None
    cleaning: bool = False

    def handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.cleaning:
            print("SIGTERM during cleanup: finishing the cleanup first", file=sys.stderr)
            return
        if self.loop is not None and self.task is not None:
            # Cancel the run; its finally blocks remove everything it made.
            self.loop.call_soon_threadsafe(self.task.cancel)
            return
        raise SystemExit(128 + signum)


INTERRUPTS: Final = Interrupts()


async def _main_task(args: argparse.Namespace, made: Made) -> Results:
    INTERRUPTS.loop, INTERRUPTS.task = asyncio.get_running_loop(), asyncio.current_task()
    try:
        return await run(args, made)
    finally:
        INTERRUPTS.loop = INTERRUPTS.task = None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--iterations",
        type=int,
        default=10,
        help="measured create+start pairs (agent, direct) per backend (default 10)",
    )
    parser.add_argument(
        "--console-lines",
        type=int,
        default=50_000,
        help="lines per console burst; 0 skips the console (default 50000)",
    )
    parser.add_argument(
        "--capped-seconds",
        type=float,
        default=5.0,
        help="the burst to the agent with the default cap is spread over this long (default 5)",
    )
    parser.add_argument(
        "--servers",
        type=int,
        default=20,
        help="servers running for the memory figure; 0 skips it (default 20)",
    )
    parser.add_argument(
        "--no-btrfs",
        dest="btrfs",
        action="store_false",
        help="only the directory backend",
    )
    return parser


def _quiet_structlog() -> None:
    # The agent's storage code logs through structlog in this process: keep the table clean.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.iterations < 1 or args.console_lines < 0 or args.servers < 0:
        print("--iterations must be at least 1, the others at least 0", file=sys.stderr)
        return 2
    if (
        shutil.which("docker") is None
        or subprocess.run(
            ["docker", "info"], capture_output=True, timeout=60, check=False
        ).returncode
    ):
        print("the Docker engine is not reachable", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, INTERRUPTS.handle)
    _quiet_structlog()
    build_test_images()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="stellar-bench-") as tmp:
        made = Made(Path(tmp))
        try:
            results = asyncio.run(_main_task(args, made))
        except asyncio.CancelledError:
            print("interrupted: everything made was removed", file=sys.stderr)
            return 128 + signal.SIGTERM
        except BaseException:
            for agent in made.agents:
                tail = "\n".join(agent.log_text().splitlines()[-20:])
                if tail:
                    print(f"--- last lines of {agent.root.name}'s log:\n{tail}", file=sys.stderr)
            raise
        finally:
            INTERRUPTS.cleaning = True
            made.stop_agents()
            for problem in made.release_mounts():
                print(f"cleanup: {problem}", file=sys.stderr)
    report(args, results, time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
