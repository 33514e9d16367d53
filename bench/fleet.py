"""The control plane at fleet size: many nodes, many servers, several replicas.

Run ``python -m bench.fleet`` (``--quick`` for a smaller, shorter run; ``--help``). In one
run it deploys, one after the other, a baseline fleet (``--baseline-nodes`` nodes,
``--baseline-servers`` servers; default 1 and 20) and the full fleet (``--nodes``,
``--servers``, ``--users``; default 50, 1,000 and 200), each with ``--replicas`` control-plane
replicas (default 3: real ``python -m control_plane serve`` processes on a fresh PostgreSQL
database, created for the run and dropped after it, and Redis) behind a round-robin TCP
balancer (``bench/fleet_balancer.py``). The baseline has as many servers per user as the full
fleet, so a user's list is as long in both: what grows is the fleet.

The nodes are the real agent application with only Docker simulated
(``bench/fleet_nodes.py``, ``bench/fleet_runtime.py``): each checks every command token with
the agent's verifier and replay cache, keeps its servers' state, and streams events
(state changes, and a ``stats`` sample of each running server every ``--stats-seconds``) to
the replica that follows it.

In each fleet, ``--concurrency`` clients send for ``--seconds``, through the balancer, a mix
of ``GET /api/v1/servers`` (list), ``GET /api/v1/servers/{id}`` (get) and
``POST /api/v1/servers/{id}/power`` (start and kill in turn; each start also sends the node
the spec), each as a random user with that user's API key. It prints p50/p99 and errors of
each, and the full fleet's p99 against the baseline's (target: list and power within 2x).

Then, in the full fleet, it SIGKILLs the replica that follows the most nodes (seen from
/proc: its TCP connections to node ports, nothing the replica reports about itself) and
times, on the nodes' side, how long each of those nodes goes without an event-stream
subscriber: the takeover time. It reports each replica's resident memory (RSS) after the load,
and the CPU seconds each part of the bench used during it.

It prints figures and asserts nothing about time; ``--json PATH`` also writes them as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Final

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from bench.fleet_deploy import (
    Deployment,
    Size,
    connections,
    deployed,
    process_cpu_seconds,
    processes_named,
    rss_mib,
    stream_table,
)
from bench.load import Run, client_session
from bench.processes import percentile

OPERATIONS: Final = ("list", "get", "power")
WEIGHTS: Final = (5, 3, 2)
TARGET_P99_RATIO: Final = 2.0
TARGETED: Final = ("list", "power")
TAKEOVER_TARGET_SECONDS: Final = 10.0
DEFAULT_POSTGRES: Final = "postgresql://stellar:stellar@127.0.0.1:5432/stellar_test"
DEFAULT_REDIS: Final = "redis://127.0.0.1:6379/7"


@dataclass
class PhaseResult:
    size: Size
    runs: dict[str, Run]
    rss_mib: list[float]
    nodes_rss_mib: float
    notes: list[str] = field(default_factory=list)
    takeover: dict[str, Any] | None = None
    events: dict[str, int] = field(default_factory=dict)
    unfollowed: int = 0
    stream_drops: int = 0
    unfollowed_after: int = 0


class Load:
    """Clients acting as random users: list, get, and power on servers of their own."""

    def __init__(self, deployment: Deployment, session: aiohttp.ClientSession) -> None:
        self._base = deployment.base_url
        self._session = session
        self._keys = [k for k, servers in deployment.fleet.servers_by_key.items() if servers]
        self._owned = deployment.fleet.servers_by_key
        self.runs = {name: Run() for name in OPERATIONS}

    async def _call(self, run: Run, method: str, path: str, key: str, body: Any = None) -> None:
        start = time.perf_counter_ns()
        headers = {"Authorization": f"Bearer {key}"}
        try:
            async with self._session.request(
                method, self._base + path, headers=headers, json=body
            ) as answer:
                text = await answer.read()
                status = answer.status
        except (aiohttp.ClientError, TimeoutError) as err:
            run.latencies.append((time.perf_counter_ns() - start) / 1000)
            run.failed(f"{method} {path}: {err!r}")
            return
        run.latencies.append((time.perf_counter_ns() - start) / 1000)
        if not 200 <= status < 300:
            run.failed(f"{method} {path} answered {status}: {text[:200]!r}")

    async def worker(self, powered: list[tuple[str, str]], deadline: float) -> None:
        """``powered``: (key, server) pairs only this worker powers, so no two power
        actions on one server overlap (the node would rightly refuse some)."""
        running: dict[str, bool] = {}
        rng = random.Random()
        while time.perf_counter() < deadline:
            operation = rng.choices(OPERATIONS, WEIGHTS)[0]
            key = rng.choice(self._keys)
            if operation == "list":
                await self._call(self.runs["list"], "GET", "/api/v1/servers", key)
            elif operation == "get":
                server = rng.choice(self._owned[key])
                await self._call(self.runs["get"], "GET", f"/api/v1/servers/{server}", key)
            elif powered:
                key, server = rng.choice(powered)
                action = "kill" if running.get(server) else "start"
                path = f"/api/v1/servers/{server}/power"
                await self._call(self.runs["power"], "POST", path, key, {"action": action})
                running[server] = not running.get(server, False)

    async def run(self, seconds: float, concurrency: int) -> None:
        pairs = [(key, server) for key, servers in self._owned.items() for server in servers]
        random.shuffle(pairs)
        shares = [pairs[i::concurrency] for i in range(concurrency)]
        start = time.perf_counter()
        deadline = start + seconds
        await asyncio.gather(*(self.worker(share, deadline) for share in shares))
        for run in self.runs.values():
            run.wall_seconds += time.perf_counter() - start


async def _load(deployment: Deployment, seconds: float, concurrency: int) -> dict[str, Run]:
    async with client_session(concurrency) as session:
        await Load(deployment, session).run(min(2.0, seconds), concurrency)  # warm-up
        load = Load(deployment, session)
        await load.run(seconds, concurrency)
    return load.runs


async def _takeover(deployment: Deployment, timeout: float) -> dict[str, Any]:
    """SIGKILL the replica following the most nodes; time until each is followed again
    (waiting at most ``timeout`` seconds)."""
    table = await stream_table(deployment.control_url)
    held_by = [connections(replica) for replica in deployment.replicas]
    followed = [
        sorted(node for node, row in table.items() if mine.intersection(map(tuple, row["peers"])))
        for mine in held_by
    ]
    held = [len(nodes) for nodes in followed]
    victim_index = max(range(len(held)), key=held.__getitem__)
    victim = deployment.replicas[victim_index]
    assert victim.process is not None
    killed_at = time.monotonic()
    victim.process.send_signal(signal.SIGKILL)
    victim.process.wait()
    lost: dict[str, float] = {}
    back: dict[str, float] = {}
    while time.monotonic() - killed_at < timeout:
        table = await stream_table(deployment.control_url)
        for node in followed[victim_index]:
            closed = [t for t in table[node]["closed"] if t >= killed_at]
            if closed and node not in lost:
                lost[node] = closed[0]
        for node, closed_at in lost.items():
            reopened = [t for t in table[node]["opened"] if t >= closed_at]
            if reopened and node not in back:
                back[node] = reopened[0] - killed_at
        # Done once what the victim held came back (and it held what /proc said).
        if len(lost) >= held[victim_index] and len(back) == len(lost):
            break
        await asyncio.sleep(0.05)
    missing = {
        node: {
            "open": table[node]["open"],
            "opened": [round(t - killed_at, 2) for t in table[node]["opened"][-3:]],
            "closed": [round(t - killed_at, 2) for t in table[node]["closed"][-3:]],
        }
        for node in followed[victim_index]
        if node not in back
    }
    return {
        "replica": victim.name,
        "nodes_per_replica": held,
        # What the nodes not followed again said (seconds since the kill): where to look.
        "missing": missing,
        "nodes_lost": len(lost),
        "nodes_back": len(back),
        "seconds": sorted(back.values()),
        "timeout_seconds": timeout,
    }


async def _events(deployment: Deployment) -> tuple[dict[str, int], int]:
    """What the nodes published on their event streams so far (by kind), and lost."""
    table = await stream_table(deployment.control_url)
    kinds: dict[str, int] = {}
    for row in table.values():
        for kind, count in row["published"].items():
            kinds[kind] = kinds.get(kind, 0) + count
    dropped = sum(row["dropped"] for row in table.values())
    return kinds, dropped


async def _list_cache_lookups(deployment: Deployment) -> tuple[int, int]:
    """Server-list pages answered from the replicas' kept pages, and read anew, summed over
    the replicas (their ``/metrics``, open to the harness's address)."""
    counts = {"hit": 0.0, "miss": 0.0}
    async with aiohttp.ClientSession() as session:
        for replica in deployment.replicas:
            async with session.get(replica.base_url + "/metrics") as answer:
                answer.raise_for_status()
                text = await answer.text()
            for family in text_string_to_metric_families(text):
                if family.name != "stellar_list_cache_lookups":
                    continue
                for sample in family.samples:
                    if sample.name.endswith("_total"):
                        counts[sample.labels["outcome"]] += sample.value
    return int(counts["hit"]), int(counts["miss"])


def _cpu_by_process(deployment: Deployment) -> dict[str, dict[int, float]]:
    """CPU seconds used so far by each process of each part of the bench, by pid."""
    groups = {
        "replicas": [r.process.pid for r in deployment.replicas if r.process is not None],
        "simulated nodes": [deployment.nodes.process.pid] if deployment.nodes.process else [],
        "PostgreSQL": processes_named("postgres"),
        "Redis": processes_named("redis-server"),
        "balancer": [deployment.balancer.process.pid] if deployment.balancer.process else [],
        "load generator": [os.getpid()],
    }
    return {name: {pid: process_cpu_seconds(pid) for pid in pids} for name, pids in groups.items()}


def _cpu_note(
    before: dict[str, dict[int, float]], after: dict[str, dict[int, float]], seconds: float
) -> str:
    """Where the machine's CPU went during the load: each part's seconds (processes that
    ended during it, such as a PostgreSQL backend, are not counted)."""
    used = {
        name: sum(cpu - before[name].get(pid, 0.0) for pid, cpu in pids.items())
        for name, pids in after.items()
    }
    parts = ", ".join(f"{name} {value:.1f}" for name, value in used.items())
    available = seconds * (os.cpu_count() or 1)
    return f"CPU seconds during the load ({available:.0f} available): {parts}"


def run_phase(size: Size, root: Path, args: argparse.Namespace, *, takeover: bool) -> PhaseResult:
    with deployed(
        size, root, args.postgres, args.redis, args.stats_seconds, args.running_share
    ) as deployment:
        before = asyncio.run(stream_table(deployment.control_url))
        cpu_before, started = _cpu_by_process(deployment), time.perf_counter()
        runs = asyncio.run(_load(deployment, args.seconds, args.concurrency))
        cpu_note = _cpu_note(cpu_before, _cpu_by_process(deployment), time.perf_counter() - started)
        after = asyncio.run(stream_table(deployment.control_url))
        result = PhaseResult(
            size,
            runs,
            [rss_mib(replica) for replica in deployment.replicas],
            rss_mib(deployment.nodes),
            deployment.notes,
        )
        result.unfollowed = deployment.unfollowed
        result.notes.append(cpu_note)
        hits, misses = asyncio.run(_list_cache_lookups(deployment))
        result.notes.append(
            f"list pages answered from a replica's kept pages: {hits} of {hits + misses}"
            f" ({100 * hits / max(1, hits + misses):.0f} %; the others were read anew after"
            " a change, or first asked on that replica)"
        )
        result.events, dropped = asyncio.run(_events(deployment))
        published = ", ".join(f"{n} {kind}" for kind, n in sorted(result.events.items()))
        result.notes.append(
            f"events the nodes published: {published or 'none'}; dropped by a slow follower:"
            f" {dropped}"
        )
        result.stream_drops = sum(
            len(after[node]["closed"]) - len(before[node]["closed"]) for node in after
        )
        result.unfollowed_after = sum(1 for row in after.values() if row["open"] < 1)
        result.notes.append(
            f"event streams that ended during the load (no replica died): {result.stream_drops};"
            f" nodes without a follower at its end: {result.unfollowed_after}"
        )
        if takeover and len(deployment.replicas) > 1:
            result.takeover = asyncio.run(_takeover(deployment, args.takeover_timeout))
    return result


def ms(us: float) -> str:
    return f"{us / 1000:.1f}"


def _summary(run: Run) -> dict[str, Any]:
    values = run.latencies
    return {
        "requests": len(values),
        "per_second": round(run.per_second, 1),
        "p50_ms": round(statistics.median(values) / 1000, 2) if values else None,
        "p99_ms": round(percentile(values, 99) / 1000, 2) if values else None,
        "errors": run.errors,
        "first_error": run.first_error,
    }


def report(results: list[PhaseResult], args: argparse.Namespace) -> dict[str, Any]:
    print(
        f"fleet bench: concurrency={args.concurrency} seconds={args.seconds}"
        f" stats-seconds={args.stats_seconds} running-share={args.running_share};"
        f" {os.cpu_count()} CPUs (shared: expect noise)"
    )
    out: dict[str, Any] = {"phases": {}}
    for result in results:
        size = result.size
        print(
            f"== {size.label}: {size.nodes} nodes, {size.servers} servers, {size.users} users,"
            f" {size.replicas} replicas"
        )
        for note in result.notes:
            print(f"  {note}")
        print(
            f"  {'operation':<10} {'requests':>8} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8} errors"
        )
        phase: dict[str, Any] = {"size": size.__dict__, "operations": {}}
        for name, run in result.runs.items():
            row = _summary(run)
            phase["operations"][name] = row
            print(
                f"  {name:<10} {row['requests']:>8} {row['per_second']:>7}"
                f" {row['p50_ms']!s:>8} {row['p99_ms']!s:>8} {row['errors']}"
            )
            if run.first_error:
                print(f"    first error: {run.first_error}")
        rss = ", ".join(f"{value:.0f}" for value in result.rss_mib)
        print(
            f"  RSS per replica (MiB): {rss}; simulated nodes' process: {result.nodes_rss_mib:.0f}"
        )
        phase["rss_mib"] = result.rss_mib
        phase["nodes_rss_mib"] = result.nodes_rss_mib
        phase["events"] = result.events
        phase["unfollowed_nodes"] = result.unfollowed
        phase["stream_drops"] = result.stream_drops
        phase["unfollowed_after_load"] = result.unfollowed_after
        if result.takeover is not None:
            phase["takeover"] = takeover = result.takeover
            seconds = takeover["seconds"]
            print(
                f"  takeover: killed {takeover['replica']} (nodes followed per replica:"
                f" {takeover['nodes_per_replica']}); {takeover['nodes_back']} of"
                f" {takeover['nodes_lost']} nodes it followed were followed again within"
                f" {takeover['timeout_seconds']:.0f} s"
                + (
                    f", median {statistics.median(seconds):.1f} s, max {max(seconds):.1f} s"
                    f" (target <= {TAKEOVER_TARGET_SECONDS:.0f} s)"
                    if seconds
                    else ""
                )
            )
            for node, row in takeover["missing"].items():
                print(f"    not followed again: node {node}: {row}")
        out["phases"][size.label] = phase
    if len(results) == 2:
        base, full = results
        out["ratios"] = ratios = {}
        for name in OPERATIONS:
            b, f = base.runs[name].latencies, full.runs[name].latencies
            if not b or not f:
                continue
            ratio = percentile(f, 99) / percentile(b, 99)
            ratios[name] = round(ratio, 2)
            verdict = "met" if ratio <= TARGET_P99_RATIO else "NOT met"
            target = f" (target <= {TARGET_P99_RATIO}: {verdict})" if name in TARGETED else ""
            print(f"ratio p99 {name}, {full.size.label} / {base.size.label}: {ratio:.2f}{target}")
    out["errors"] = sum(run.errors for result in results for run in result.runs.values())
    return out


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    add = parser.add_argument
    add("--quick", action="store_true", help="10 nodes, 200 servers, 40 users, 10 s")
    add("--nodes", type=int, default=50)
    add("--servers", type=int, default=1000)
    add("--users", type=int, default=200)
    add("--replicas", type=int, default=3)
    add("--baseline-nodes", type=int, default=1)
    add("--baseline-servers", type=int, default=20)
    add("--seconds", type=float, default=30.0, help="measured seconds per fleet (default 30)")
    add("--concurrency", type=int, default=16, help="clients in flight (default 16)")
    add("--stats-seconds", type=float, default=5.0, help="agent sample interval (default 5)")
    add(
        "--running-share",
        type=float,
        default=0.5,
        help="share of the servers running when the replicas start (default 0.5)",
    )
    add(
        "--takeover-timeout",
        type=float,
        default=150.0,
        help="how long to wait for the killed replica's nodes to be followed again (default 150)",
    )
    add("--no-takeover", action="store_true", help="skip killing a replica")
    add("--postgres", default=os.environ.get("STELLAR_TEST_POSTGRES_URL", DEFAULT_POSTGRES))
    add("--redis", default=os.environ.get("STELLAR_BENCH_REDIS_URL", DEFAULT_REDIS))
    add("--json", type=Path, help="also write the figures to this file")
    add("--keep", type=Path, help="keep the processes' logs in this directory")
    return parser


def _terminate(signum: int, _frame: FrameType | None) -> None:
    # Turn SIGTERM into an exception so that every process is stopped on the way out.
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.quick:
        args.nodes, args.servers, args.users, args.seconds = 10, 200, 40, 10.0
    if min(args.nodes, args.servers, args.users, args.replicas, args.baseline_nodes) < 1:
        print("every count must be positive", file=sys.stderr)
        return 2
    per_user = max(1, args.servers // args.users)
    baseline_users = max(1, args.baseline_servers // per_user)
    sizes = [
        Size("baseline", args.baseline_nodes, args.baseline_servers, baseline_users, args.replicas),
        Size("full", args.nodes, args.servers, args.users, args.replicas),
    ]
    signal.signal(signal.SIGTERM, _terminate)
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        if args.keep is None:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="stellar-fleet-")))
        else:
            root = args.keep
            root.mkdir(parents=True, exist_ok=True)
        results = [
            run_phase(size, root, args, takeover=size.label == "full" and not args.no_takeover)
            for size in sizes
        ]
    figures = report(results, args)
    print(f"total bench time {time.perf_counter() - started:.1f} s")
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
