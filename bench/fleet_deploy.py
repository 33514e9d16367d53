"""One fleet for the benchmark: a fresh PostgreSQL database, simulated nodes, control-plane
replicas (real ``python -m control_plane serve`` processes on that database and Redis), and
the round-robin balancer in front of them; torn down on the way out, whatever happens."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import aiohttp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench.api import panel_env
from bench.databases import create_postgres_database, drop_postgres_database
from bench.fleet_population import Fleet, populate
from bench.processes import Server, free_port, running
from control_plane.settings import load_settings
from shared.command_keys import key_id, public_key_text, write_private_key

BCRYPT_COST: Final = 10
SPECS_PER_REQUEST: Final = 200
FOLLOW_TIMEOUT_SECONDS: Final = 120.0
# The fleet is settled once no event stream opened or closed for this long (a replica checks
# its share of the nodes every 3 s).
SETTLE_SECONDS: Final = 4.0
START_TIMEOUT_SECONDS: Final = 90.0


@dataclass(frozen=True)
class Size:
    label: str
    nodes: int
    servers: int
    users: int
    replicas: int


@dataclass
class Deployment:
    size: Size
    fleet: Fleet
    balancer: Server
    replicas: list[Server]
    nodes: Server
    node_ports: list[int]
    control_url: str
    notes: list[str] = field(default_factory=list)
    # Nodes without an event-stream follower when the load began.
    unfollowed: int = 0

    @property
    def base_url(self) -> str:
        return self.balancer.base_url


def _module(name: str, port: int, ready: str, root: Path, *args: str) -> Server:
    argv = [sys.executable, "-m", name, *args]
    return Server(
        name.rsplit(".", 1)[-1] + f"-{port}", argv, port, ready, root / f"{port}.log", root
    )


async def _create_servers(control_url: str, fleet: Fleet) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as session:
        for start in range(0, len(fleet.specs), SPECS_PER_REQUEST):
            chunk = fleet.specs[start : start + SPECS_PER_REQUEST]
            async with session.post(control_url + "/servers", json={"servers": chunk}) as answer:
                if answer.status != 200:
                    raise RuntimeError(f"the nodes refused the servers: {await answer.text()}")


async def stream_table(control_url: str) -> dict[str, dict[str, Any]]:
    """Per node: event-stream subscribers now, and when each opened and closed."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(control_url + "/streams") as answer,
    ):
        table: dict[str, dict[str, Any]] = await answer.json()
        return table


async def wait_followed(control_url: str, timeout: float = FOLLOW_TIMEOUT_SECONDS) -> int:
    """Wait until every node has an event-stream subscriber (a replica following it), for at
    most ``timeout`` seconds; how many nodes still have none."""
    start = time.monotonic()
    while True:
        table = await stream_table(control_url)
        missing = sum(1 for row in table.values() if row["open"] < 1)
        if table and not missing:
            return 0
        if time.monotonic() - start > timeout:
            return missing
        await asyncio.sleep(0.2)


async def wait_settled(
    control_url: str, fleet: Fleet, timeout: float = FOLLOW_TIMEOUT_SECONDS
) -> int:
    """Wait until the fleet is settled, for at most ``timeout`` seconds: every node followed by
    one replica, whose follower has read each of the node's servers (what a follower does
    when it connects: 1,000 reads and state writes at full size), and no stream opened or
    closed for :data:`SETTLE_SECONDS` (replicas started together share the nodes out, which
    may move some at first). How many servers are still unread by their node's follower."""
    per_node: dict[str, int] = {}
    for node in fleet.node_of.values():
        per_node[node] = per_node.get(node, 0) + 1
    start = time.monotonic()
    while True:
        table = await stream_table(control_url)
        unread = sum(
            max(0, count - int(table[node].get("reads_since_open", 0)))
            if table[node]["open"] == 1
            else count
            for node, count in per_node.items()
        )
        last_change = max(
            (t for row in table.values() for t in [*row["opened"], *row["closed"]]), default=0
        )
        if not unread and time.monotonic() - last_change >= SETTLE_SECONDS:
            return 0
        if time.monotonic() - start > timeout:
            return unread
        await asyncio.sleep(0.2)


@contextlib.contextmanager
def deployed(
    size: Size,
    root: Path,
    postgres_admin_url: str,
    redis_url: str,
    stats_seconds: float,
    running_share: float,
) -> Iterator[Deployment]:
    """Everything of one fleet running; stopped and its database dropped afterwards."""
    root = root / size.label
    root.mkdir(parents=True)
    database_url = asyncio.run(create_postgres_database(postgres_admin_url))
    try:
        key_file = root / "signing.key"
        signing_key = Ed25519PrivateKey.generate()
        write_private_key(key_file, signing_key)
        replica_ports = [free_port() for _ in range(size.replicas)]
        envs = [panel_env(database_url, port, BCRYPT_COST, key_file) for port in replica_ports]
        for env in envs:
            env["REDIS_URL"] = redis_url
            # Every replica the same secret: a session made on one is valid on the others.
            env["STELLAR_AUTH_SECRET"] = envs[0]["STELLAR_AUTH_SECRET"]
            # The harness reads each replica's /metrics (the list cache's hits) from here.
            env["STELLAR_METRICS_SCRAPERS"] = "127.0.0.1/32"
        settings = load_settings(envs[0])
        node_ports = [free_port() for _ in range(size.nodes)]
        fleet = asyncio.run(
            populate(
                settings,
                [f"http://127.0.0.1:{port}" for port in node_ports],
                size.servers,
                size.users,
                running_share,
            )
        )
        control_port = free_port()
        config = {
            "root": str(root / "nodes"),
            "control_port": control_port,
            "issuer": settings.issuer,
            "kid": key_id(signing_key.public_key()),
            "public_key": public_key_text(signing_key.public_key()),
            "stats_seconds": stats_seconds,
            "nodes": [
                {"id": node_id, "port": port}
                for node_id, port in zip(fleet.node_ids, node_ports, strict=True)
            ],
        }
        config_path = root / "nodes.json"
        config_path.write_text(json.dumps(config), encoding="utf-8")
        nodes = _module("bench.fleet_nodes", control_port, "/healthz", root, str(config_path))
        control_url = nodes.base_url
        replicas = [
            Server(
                f"replica-{i}",
                [sys.executable, "-m", "control_plane", "serve"],
                port,
                "/healthz",
                root / f"replica-{i}.log",
                root,
                env,
            )
            for i, (port, env) in enumerate(zip(replica_ports, envs, strict=True))
        ]
        balancer_port = free_port()
        balancer = _module(
            "bench.fleet_balancer",
            balancer_port,
            "/healthz",
            root,
            str(balancer_port),
            *map(str, replica_ports),
        )
        with running([nodes], START_TIMEOUT_SECONDS):
            asyncio.run(_create_servers(control_url, fleet))
            started = time.monotonic()
            with running([*replicas, balancer], START_TIMEOUT_SECONDS):
                deployment = Deployment(
                    size, fleet, balancer, replicas, nodes, node_ports, control_url
                )
                missing = asyncio.run(wait_followed(control_url))
                followed = time.monotonic() - started
                deployment.notes.append(
                    f"every node followed {followed:.1f} s after the replicas were started"
                    if not missing
                    else f"NOT every node followed: {missing} of {size.nodes} had no event-stream"
                    f" follower {followed:.0f} s after the replicas were started"
                )
                deployment.unfollowed = missing
                unread = asyncio.run(wait_settled(control_url, fleet))
                deployment.notes.append(
                    f"settled {time.monotonic() - started:.1f} s after the replicas were started:"
                    " every server's state read by its node's follower, no stream moved for"
                    f" {SETTLE_SECONDS:.0f} s (the load starts then: steady state, not the"
                    " followers' first reads nor the replicas sharing the nodes out)"
                    if not unread
                    else f"NOT every server's state read: {unread} of {size.servers} unread"
                )
                yield deployment
    finally:
        asyncio.run(drop_postgres_database(postgres_admin_url, database_url))


def rss_mib(server: Server) -> float:
    """Resident memory of the server's process now (Linux /proc), in MiB."""
    if server.process is None:
        return 0.0
    with open(f"/proc/{server.process.pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def process_cpu_seconds(pid: int) -> float:
    """User and system CPU time the process has used so far, its threads included (Linux
    /proc); 0 for a process that is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    # utime and stime: the 14th and 15th fields, the 12th and 13th after the name.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def processes_named(name: str) -> list[int]:
    """Every process whose command name is ``name`` (``postgres``, ``redis-server``)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/comm", encoding="utf-8") as comm:
                if comm.read().strip() == name:
                    found.append(int(entry))
        except OSError:
            continue
    return found


def connections(server: Server) -> set[tuple[int, int]]:
    """The process's established TCP connections as (local port, remote port), read from
    /proc, so that which replica follows which node is seen without asking the replica."""
    if server.process is None:
        return set()
    inodes: set[str] = set()
    for fd in Path(f"/proc/{server.process.pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = fd.readlink().as_posix()
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    found: set[tuple[int, int]] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table, encoding="ascii") as lines:
            next(lines)
            for line in lines:
                parts = line.split()
                if parts[3] == "01" and parts[9] in inodes:
                    local, remote = (int(parts[i].rsplit(":", 1)[1], 16) for i in (1, 2))
                    found.add((local, remote))
    return found
