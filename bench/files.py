"""What moving files through the panel costs: big uploads and downloads, memory, backups.

Run ``python bench/files.py`` as root with dockerd running (``--help`` for the options). It
builds the local test images (``deploy/dev/build-test-images.sh``), migrates a fresh SQLite
file, creates an admin in it, and starts a real ``python -m control_plane serve`` (signing
key file, ``STELLAR_ENCRYPTION_KEYS``, rate limits raised) and a real ``python -m node_agent
serve`` (``directory`` storage backend) on free loopback ports. Through the API, signed in
with a session cookie, it registers the node, adds an allocation and a blueprint, and creates
one server (not started). In one run it measures

1. upload and download of one ``--size-mib`` file (random bytes, written to a local file in
   chunks first; the client never holds more than a chunk): ``PUT .../files/upload`` streamed
   from that file, then ``GET .../files/contents`` streamed into SHA-256, which must equal
   the uploaded one. Against a plain local copy of the same file in the same run
   (``shutil.copyfile``, which copies in the kernel, timed with and without the ``fsync``
   that the agent does before it answers an upload). The client hashes the download as it
   arrives; hashing the same number of bytes alone is timed beside it;
2. the resident memory of the control plane and of the agent during each transfer:
   ``VmRSS`` from ``/proc/<pid>/status`` sampled every 50 ms in a thread (peak, and the
   idle value before), and ``VmHWM`` (the peak over the process's life) afterwards;
3. a backup of the server's volume, filled with ``--fill-mib`` of mixed files (random
   "region" and "plugin" files, compressible logs and many small configs) written straight
   into the volume directory: from ``POST .../backups`` until ``GET .../backups/{id}`` says
   ``completed`` (polled every 100 ms), against ``tar -C <volume> -cf - . | gzip -6`` into a
   file plus ``fsync`` (level 6 is what ``node_agent/backups/archive.py`` uses), alternating
   ``--backup-rounds`` times; and the download of each backup (``GET .../download``, the
   control plane decrypting the node's file as it streams), written to a local file; the
   first one is listed with ``tar -tzf`` afterwards (untimed) to check it is whole.

It prints figures and ratios and asserts nothing about time. Everything it made goes away
at the end, on errors and on SIGTERM too: the server (through the API, and its container by
label if that failed), the agent, the control plane, the agent network if this run created
it, and the temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import platform
import random
import resource
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any, Final

import aiohttp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

# Run as a script (python bench/x.py), the repository root is not on the path yet.
REPO_ROOT: Final = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench.processes import Server, free_port, running  # noqa: E402
from control_plane import cli_ops  # noqa: E402
from control_plane.settings import load_settings  # noqa: E402
from node_agent.backups.archive import COMPRESS_LEVEL  # noqa: E402
from node_agent.docker.hardening import SERVER_LABEL  # noqa: E402
from node_agent.docker.network import AGENT_NETWORK  # noqa: E402
from node_agent.storage.context import game_user_ids  # noqa: E402
from shared.command_keys import key_id, public_key_text, write_private_key  # noqa: E402
from tests.support.containers import FAKE_GAME_IMAGE, build_test_images  # noqa: E402

MIB: Final = 1024 * 1024
CLIENT_CHUNK: Final = 1024 * 1024
EMAIL: Final = "bench@example.org"
PASSWORD: Final = "correct horse battery staple"
RATE_LIMITS: Final = (
    "api=1000000/60,authentication=1000000/60,sign_in_account=1000000/60,files=1000000/60"
)
OUR_VARIABLES: Final = ("STELLAR_", "REDIS_URL", "DATABASE_URL")
UNSAFE: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})
UPLOAD_PATH: Final = "/bench.bin"
SAMPLE_SECONDS: Final = 0.05
POLL_SECONDS: Final = 0.1
BACKUP_TIMEOUT_SECONDS: Final = 600.0
TARGET_DOWNLOAD_RATIO: Final = 0.30
TARGET_RSS_MB: Final = 150.0
TARGET_BACKUP_RATIO: Final = 0.8


def mb_per_s(size: int, seconds: float) -> float:
    return size / 1e6 / seconds if seconds > 0 else 0.0


# --------------------------------------------------------------------------- memory


def status_kib(pid: int, name: str) -> int:
    """A ``/proc/<pid>/status`` figure (``VmRSS``, ``VmHWM``) in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {name} for pid {pid}")


class RssSampler:
    """Peak VmRSS of some processes, read every ``SAMPLE_SECONDS`` in a thread."""

    def __init__(self, pids: dict[str, int]) -> None:
        self._pids = pids
        self.before = {name: status_kib(pid, "VmRSS") for name, pid in pids.items()}
        self.peak = dict(self.before)
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for name, pid in self._pids.items():
                with contextlib.suppress(OSError, RuntimeError):
                    self.peak[name] = max(self.peak[name], status_kib(pid, "VmRSS"))
            self.samples += 1
            self._stop.wait(SAMPLE_SECONDS)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()


# --------------------------------------------------------------------------- data


def write_random_file(path: Path, size: int) -> str:
    """``size`` random bytes into ``path``, a chunk at a time; their SHA-256."""
    digest = hashlib.sha256()
    with path.open("wb") as out:
        left = size
        while left:
            chunk = os.urandom(min(4 * MIB, left))
            digest.update(chunk)
            out.write(chunk)
            left -= len(chunk)
        # On disk before anything is timed: no dirty pages of ours left for writeback to throttle.
        out.flush()
        os.fsync(out.fileno())
    return digest.hexdigest()


def log_corpus(rng: random.Random, size: int) -> bytes:
    """Game-server-log-like text: compresses about as well as real logs do."""
    levels = ["INFO", "INFO", "INFO", "WARN", "DEBUG"]
    threads = ["Server thread", "Worker-Main-3", "Async Chat Thread - #2", "Netty Epoll IO #1"]
    words = [
        *("joined", "left", "the", "game", "lost", "connection", "saved", "chunks", "for"),
        *("level", "world", "overworld", "nether", "moved", "too", "quickly", "player"),
        *("teleported", "Can't", "keep", "up!", "Is", "the", "server", "overloaded?"),
        *("Running", "behind", "skipping", "ticks", "issued", "command", "/tp", "/give"),
    ]
    lines: list[str] = []
    total = 0
    while total < size:
        line = (
            f"[{rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}]"
            f" [{rng.choice(threads)}/{rng.choice(levels)}]: Player{rng.randrange(500)} "
            + " ".join(rng.choice(words) for _ in range(rng.randrange(3, 12)))
            + f" ({rng.uniform(-3e4, 3e4):.3f}, {rng.uniform(0, 256):.1f},"
            f" {rng.uniform(-3e4, 3e4):.3f})\n"
        )
        lines.append(line)
        total += len(line)
    return "".join(lines).encode("utf-8")


@dataclass
class Tree:
    files: int = 0
    directories: int = 0
    bytes: int = 0
    random_bytes: int = 0


# (directory, suffix, smallest, largest, random?): a game server's volume, roughly.
KINDS: Final = [
    ("world/region", ".mca", 2 * MIB, 12 * MIB, True),
    ("plugins", ".jar", 64 * 1024, 4 * MIB, True),
    ("logs", ".log", 256 * 1024, 8 * MIB, False),
    ("config", ".yml", 512, 32 * 1024, False),
]
# Share of the bytes of each kind (the small configs come many to the MiB).
WEIGHTS: Final = [0.45, 0.10, 0.40, 0.05]


def fill_volume(volume: Path, size: int, seed: int = 7) -> Tree:
    """About ``size`` bytes of mixed files under ``volume``, owned by the game user."""
    rng = random.Random(seed)
    corpus = log_corpus(rng, 8 * MIB)
    uid, gid = game_user_ids()
    tree = Tree()
    for (directory, suffix, smallest, largest, is_random), weight in zip(
        KINDS, WEIGHTS, strict=True
    ):
        folder = volume / directory
        folder.mkdir(parents=True, exist_ok=True)
        os.chown(folder, uid, gid)
        tree.directories += 1 if "/" not in directory else 2
        budget = int(size * weight)
        while budget > 0:
            length = min(budget, rng.randint(smallest, largest))
            if is_random:
                data = os.urandom(length)
            else:
                start = rng.randrange(len(corpus) - 1)
                data = (corpus[start:] + corpus)[:length]
            path = folder / f"{tree.files:05d}{suffix}"
            path.write_bytes(data)
            os.chown(path, uid, gid)
            tree.files += 1
            tree.bytes += length
            tree.random_bytes += length if is_random else 0
            budget -= length
    if (volume / "world").exists():
        os.chown(volume / "world", uid, gid)
    return tree


# --------------------------------------------------------------------------- the panel


class Panel:
    """The control plane's API, signed in as one user (session cookie and CSRF token)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.csrf = ""
        # 127.0.0.1 is an IP address: the default jar would drop the session cookie.
        self.http = aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=120),
        )

    def headers(self, method: str, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = dict(extra or {})
        if method in UNSAFE and self.csrf:
            headers["X-CSRF-Token"] = self.csrf
        return headers

    async def json(
        self,
        method: str,
        path: str,
        *,
        status: int = 200,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> Any:
        async with self.http.request(
            method, self.base_url + path, headers=self.headers(method, headers), **kwargs
        ) as response:
            text = await response.text()
        if response.status != status:
            raise RuntimeError(f"{method} {path} answered {response.status}: {text[:500]}")
        return json.loads(text) if text else None

    async def login(self) -> str:
        """Sign in; the user's id."""
        body = await self.json(
            "POST", "/api/v1/auth/login", json={"email": EMAIL, "password": PASSWORD}
        )
        self.csrf = body["csrf_token"]
        return str(body["user"]["id"])

    async def close(self) -> None:
        await self.http.close()


# --------------------------------------------------------------------------- what was made


@dataclass
class Made:
    """What this run created, so that it can all be removed whatever happens."""

    root: Path
    servers: list[Server] = field(default_factory=list)
    game_servers: list[str] = field(default_factory=list)
    created_network: bool = False

    def remove_containers(self) -> list[str]:
        """Containers of this run's game servers that the API did not remove (by label)."""
        problems: list[str] = []
        for server_id in self.game_servers:
            found = subprocess.run(
                ["docker", "ps", "-aq", "--filter", f"label={SERVER_LABEL}={server_id}"],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            for container in found.stdout.split():
                removed = subprocess.run(
                    ["docker", "rm", "-f", "-v", container],
                    capture_output=True,
                    text=True,
                    timeout=60,
                    check=False,
                )
                if removed.returncode:
                    problems.append(f"container {container} not removed: {removed.stderr.strip()}")
        return problems

    def remove_network(self) -> list[str]:
        if not self.created_network:
            return []
        shown = subprocess.run(
            ["docker", "network", "inspect", "-f", "{{len .Containers}}", AGENT_NETWORK],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if shown.returncode or shown.stdout.strip() != "0":
            return []  # gone already, or in use by someone else's containers: left alone
        removed = subprocess.run(
            ["docker", "network", "rm", AGENT_NETWORK],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if removed.returncode:
            return [f"network {AGENT_NETWORK} not removed: {removed.stderr.strip()}"]
        return []


def network_exists() -> bool:
    return (
        subprocess.run(
            ["docker", "network", "inspect", AGENT_NETWORK],
            capture_output=True,
            timeout=60,
            check=False,
        ).returncode
        == 0
    )


# --------------------------------------------------------------------------- set-up


def base_env() -> dict[str, str]:
    """This process's environment without any control-plane setting it may carry."""
    return {k: v for k, v in os.environ.items() if not k.startswith(OUR_VARIABLES)}


def panel_env(root: Path, key_file: Path, port: int) -> dict[str, str]:
    return {
        **base_env(),
        "STELLAR_ENV": "development",
        "STELLAR_DATABASE_URL": f"sqlite:///{root / 'stellar.db'}",
        "STELLAR_AUTH_SECRET": secrets.token_urlsafe(48),
        "STELLAR_BCRYPT_COST": "10",
        "STELLAR_RATE_LIMITS": RATE_LIMITS,
        "STELLAR_SIGNING_KEY_FILE": str(key_file),
        "STELLAR_ENCRYPTION_KEYS": f"k1:{secrets.token_hex(32)}",
        "STELLAR_HOST": "127.0.0.1",
        "STELLAR_PORT": str(port),
    }


async def prepare_database(env: dict[str, str]) -> None:
    settings = load_settings(env)
    await cli_ops.migrate(settings)
    await cli_ops.create_user(settings, email=EMAIL, password=PASSWORD, is_admin=True)


async def register_node(base_url: str) -> str:
    """Location and node through the API; the node's id."""
    panel = Panel(base_url)
    try:
        await panel.login()
        location = await panel.json("POST", "/api/v1/locations", status=201, json={"code": "bench"})
        node = await panel.json(
            "POST",
            "/api/v1/nodes",
            status=201,
            json={"name": "bench-node", "url": "http://127.0.0.1:9", "location_id": location["id"]},
        )
        return str(node["id"])
    finally:
        await panel.close()


def agent_server(root: Path, private: Ed25519PrivateKey, node_id: str) -> Server:
    port = free_port()
    agent_root = root / "agent"
    agent_root.mkdir()
    config = agent_root / "agent.toml"
    public = private.public_key()
    config.write_text(
        "\n".join(
            [
                f"node_id = {json.dumps(node_id)}",
                'listen_host = "127.0.0.1"',
                f"listen_port = {port}",
                f"data_dir = {json.dumps(str(agent_root / 'data'))}",
                'storage_backend = "directory"',
                "",
                "[trusted_keys]",
                f"{json.dumps(key_id(public))} = {json.dumps(public_key_text(public))}",
                "",
            ]
        ),
        encoding="utf-8",
    )
    argv = [sys.executable, "-m", "node_agent", "serve", "--config", str(config)]
    return Server("agent", argv, port, "/healthz", agent_root / "agent.log", agent_root)


async def create_game_server(
    panel: Panel, node_id: str, agent_url: str, owner_id: str, disk_mib: int, made: Made
) -> str:
    await panel.json("PATCH", f"/api/v1/nodes/{node_id}", json={"url": agent_url})
    await panel.json(
        "POST",
        f"/api/v1/nodes/{node_id}/allocations",
        status=201,
        json={"ip": "127.0.0.1", "port": free_port()},
    )
    blueprint = await panel.json(
        "POST",
        "/api/v1/blueprints",
        status=201,
        json={
            "name": "fake game",
            "images": [{"name": "default", "image": FAKE_GAME_IMAGE}],
            "startup": "/usr/local/bin/fake-game",
            "stop": {"type": "command", "value": "stop"},
        },
    )
    created = await panel.json(
        "POST",
        "/api/v1/servers",
        status=201,
        json={
            "name": "files bench",
            "owner_id": owner_id,
            "blueprint_id": blueprint["id"],
            "node_id": node_id,
            "memory_mib": 512,
            "cpu_percent": 100,
            "disk_mib": disk_mib,
            "pids_limit": 64,
        },
    )
    server_id = str(created["id"])
    made.game_servers.append(server_id)
    return server_id


# --------------------------------------------------------------------------- transfers


@dataclass
class Memory:
    """KiB: VmRSS before a phase, its sampled peak during it, VmHWM after it."""

    before: dict[str, int]
    peak: dict[str, int]
    hwm: dict[str, int]
    samples: int


def memory_of(sampler: RssSampler, pids: dict[str, int]) -> Memory:
    hwm = {name: status_kib(pid, "VmHWM") for name, pid in pids.items()}
    return Memory(sampler.before, sampler.peak, hwm, sampler.samples)


@dataclass
class Transfers:
    size: int
    generate_seconds: float
    copy_seconds: float
    fsync_seconds: float
    upload_seconds: float
    download_seconds: float
    read_seconds: float
    read_hash_seconds: float
    same_digest: bool
    upload_memory: Memory
    download_memory: Memory


async def upload(panel: Panel, server_id: str, source: Path, size: int) -> float:
    async def body() -> AsyncIterator[bytes]:
        with source.open("rb", buffering=0) as stream:
            while chunk := stream.read(CLIENT_CHUNK):
                yield chunk

    start = time.perf_counter()
    entry = await panel.json(
        "PUT",
        f"/api/v1/servers/{server_id}/files/upload",
        params={"path": UPLOAD_PATH, "size": str(size)},
        data=body(),
        headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
    )
    elapsed = time.perf_counter() - start
    if entry["size"] != size:
        raise RuntimeError(f"the upload stored {entry['size']} bytes, not {size}")
    return elapsed


async def download(
    panel: Panel, path: str, params: dict[str, str], sink: Callable[[bytes], object]
) -> tuple[float, int]:
    """GET ``path`` streamed into ``sink`` (a hash's ``update``, a file's ``write``)."""
    start = time.perf_counter()
    count = 0
    async with panel.http.get(panel.base_url + path, params=params) as response:
        if response.status != 200:
            raise RuntimeError(f"GET {path} answered {response.status}: {await response.text()}")
        async for chunk in response.content.iter_any():
            sink(chunk)
            count += len(chunk)
    return time.perf_counter() - start, count


def timed_copy(source: Path, target: Path) -> tuple[float, float]:
    """Seconds to copy (in the kernel), then to fsync the copy."""
    start = time.perf_counter()
    shutil.copyfile(source, target)
    copied = time.perf_counter()
    fd = os.open(target, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return copied - start, time.perf_counter() - copied


def read_alone(source: Path, *, hashed: bool) -> float:
    """Seconds to read the file (from the page cache) in the client's chunk size, and hash it."""
    digest = hashlib.sha256()
    with source.open("rb", buffering=0) as stream:
        start = time.perf_counter()
        while chunk := stream.read(CLIENT_CHUNK):
            if hashed:
                digest.update(chunk)
    return time.perf_counter() - start


async def bench_transfers(
    panel: Panel, server_id: str, pids: dict[str, int], size: int, root: Path
) -> Transfers:
    source = root / "source.bin"
    start = time.perf_counter()
    expected = await asyncio.to_thread(write_random_file, source, size)
    generated = time.perf_counter() - start
    copy_seconds, fsync_seconds = await asyncio.to_thread(timed_copy, source, root / "copy.bin")
    (root / "copy.bin").unlink()
    with RssSampler(pids) as sampler:
        upload_seconds = await upload(panel, server_id, source, size)
    upload_memory = memory_of(sampler, pids)
    digest = hashlib.sha256()
    with RssSampler(pids) as sampler:
        download_seconds, count = await download(
            panel,
            f"/api/v1/servers/{server_id}/files/contents",
            {"path": UPLOAD_PATH},
            digest.update,
        )
    download_memory = memory_of(sampler, pids)
    if count != size:
        raise RuntimeError(f"the download had {count} bytes, not {size}")
    read_seconds = await asyncio.to_thread(read_alone, source, hashed=False)
    read_hash_seconds = await asyncio.to_thread(read_alone, source, hashed=True)
    source.unlink()
    await panel.json(
        "POST",
        f"/api/v1/servers/{server_id}/files/delete",
        status=204,
        json={"paths": [UPLOAD_PATH]},
    )
    return Transfers(
        size=size,
        generate_seconds=generated,
        copy_seconds=copy_seconds,
        fsync_seconds=fsync_seconds,
        upload_seconds=upload_seconds,
        download_seconds=download_seconds,
        read_seconds=read_seconds,
        read_hash_seconds=read_hash_seconds,
        same_digest=digest.hexdigest() == expected,
        upload_memory=upload_memory,
        download_memory=download_memory,
    )


# --------------------------------------------------------------------------- backups


@dataclass
class BackupRound:
    baseline_seconds: float
    baseline_bytes: int
    backup_seconds: float
    server_side_seconds: float | None
    backup_bytes: int
    download_seconds: float
    download_bytes: int


@dataclass
class Backups:
    tree: Tree
    fill_seconds: float
    rounds: list[BackupRound] = field(default_factory=list)
    listed_entries: int | None = None
    memory: Memory | None = None


async def baseline_archive(volume: Path, target: Path) -> tuple[float, int]:
    """``tar | gzip -<level>`` of the volume into ``target``, then fsync; seconds, bytes."""
    script = f'set -o pipefail; tar -C "$1" -cf - . | gzip -{COMPRESS_LEVEL} > "$2"'
    start = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        "bash", "-c", script, "archive", str(volume), str(target)
    )
    try:
        code = await process.wait()
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        raise
    if code:
        raise RuntimeError(f"tar | gzip exited with {code}")
    fd = os.open(target, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return time.perf_counter() - start, target.stat().st_size


def _seconds_between(started: str, finished: str | None) -> float | None:
    if not finished:
        return None
    return (datetime.fromisoformat(finished) - datetime.fromisoformat(started)).total_seconds()


async def one_backup(panel: Panel, server_id: str) -> tuple[dict[str, Any], float]:
    """POST a backup and poll until it completes; its record and the seconds it took."""
    backups = f"/api/v1/servers/{server_id}/backups"
    start = time.perf_counter()
    created = await panel.json("POST", backups, status=202, json={})
    deadline = time.monotonic() + BACKUP_TIMEOUT_SECONDS
    while True:
        record: dict[str, Any] = await panel.json("GET", f"{backups}/{created['id']}")
        if record["status"] == "completed":
            return record, time.perf_counter() - start
        if record["status"] == "failed":
            raise RuntimeError(f"the backup failed: {record['reason']}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"the backup still runs after {BACKUP_TIMEOUT_SECONDS} s")
        await asyncio.sleep(POLL_SECONDS)


def list_archive(path: Path) -> int:
    listed = subprocess.run(
        ["tar", "-tzf", str(path)], capture_output=True, text=True, timeout=300, check=False
    )
    if listed.returncode:
        raise RuntimeError(f"the downloaded backup does not list: {listed.stderr.strip()}")
    return len([line for line in listed.stdout.splitlines() if line.strip("./")])


async def bench_backups(
    panel: Panel,
    server_id: str,
    volume: Path,
    pids: dict[str, int],
    args: argparse.Namespace,
    root: Path,
) -> Backups:
    start = time.perf_counter()
    tree = await asyncio.to_thread(fill_volume, volume, args.fill_mib * MIB)
    result = Backups(tree, time.perf_counter() - start)
    baseline_file = root / "baseline.tar.gz"
    download_file = root / "backup.tar.gz"
    with RssSampler(pids) as sampler:
        for turn in range(args.backup_rounds):
            # baseline first, then the backup first: page cache and drift fall on both alike.
            order = ("baseline", "backup") if turn % 2 == 0 else ("backup", "baseline")
            timings: dict[str, tuple[float, int]] = {}
            record: dict[str, Any] = {}
            for what in order:
                if what == "baseline":
                    timings[what] = await baseline_archive(volume, baseline_file)
                    baseline_file.unlink()
                else:
                    record, seconds = await one_backup(panel, server_id)
                    timings[what] = (seconds, int(record["size_bytes"] or 0))
            with download_file.open("wb") as out:
                download_seconds, download_bytes = await download(
                    panel,
                    f"/api/v1/servers/{server_id}/backups/{record['id']}/download",
                    {},
                    out.write,
                )
            if turn == 0:
                result.listed_entries = await asyncio.to_thread(list_archive, download_file)
            download_file.unlink()
            result.rounds.append(
                BackupRound(
                    baseline_seconds=timings["baseline"][0],
                    baseline_bytes=timings["baseline"][1],
                    backup_seconds=timings["backup"][0],
                    server_side_seconds=_seconds_between(
                        record["created_at"], record["finished_at"]
                    ),
                    backup_bytes=timings["backup"][1],
                    download_seconds=download_seconds,
                    download_bytes=download_bytes,
                )
            )
    result.memory = memory_of(sampler, pids)
    return result


# --------------------------------------------------------------------------- report


def mib(kib: int) -> str:
    return f"{kib / 1024:.1f}"


def report_memory(title: str, memory: Memory) -> None:
    print(f"  {title} ({memory.samples} samples every {SAMPLE_SECONDS * 1000:.0f} ms; MiB)")
    for name in memory.peak:
        print(
            f"    {name:<14} VmRSS before {mib(memory.before[name]):>7}"
            f"  peak {mib(memory.peak[name]):>7}  VmHWM after {mib(memory.hwm[name]):>7}"
        )


def verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def report(
    args: argparse.Namespace,
    transfers: Transfers | None,
    backups: Backups | None,
    backups_skipped: str | None,
    elapsed: float,
) -> None:
    print(
        f"files bench: size={args.size_mib} MiB fill={args.fill_mib} MiB"
        f" backup-rounds={args.backup_rounds}; python {platform.python_version()},"
        f" {os.cpu_count()} CPUs, aiohttp {aiohttp.__version__}; control plane on SQLite,"
        " agent with the directory backend, all on loopback; load average at the start"
        f" {args.load_before:.2f}, at the end {os.getloadavg()[0]:.2f}"
    )
    summary: list[str] = []
    if transfers is not None:
        t = transfers
        print(f"1. one {t.size / MIB:.0f} MiB random file (MB/s = 10^6 bytes/s)")
        rows = [
            ("generate the source (urandom + SHA-256 + write)", t.generate_seconds),
            ("plain copy (shutil.copyfile), no fsync", t.copy_seconds),
            ("plain copy + fsync", t.copy_seconds + t.fsync_seconds),
            ("upload through control plane and agent", t.upload_seconds),
            ("download through control plane and agent", t.download_seconds),
            ("plain read of the source file (page cache)", t.read_seconds),
            ("plain read + SHA-256 (what the client does)", t.read_hash_seconds),
        ]
        for name, seconds in rows:
            print(f"  {name:<50} {seconds:>7.2f} s {mb_per_s(t.size, seconds):>8.0f} MB/s")
        copy = t.copy_seconds
        synced = t.copy_seconds + t.fsync_seconds
        up_ratio = copy / t.upload_seconds
        down_ratio = copy / t.download_seconds
        print(
            f"  ratios vs plain copy: upload {up_ratio:.2f} (vs copy+fsync, which the agent"
            f" does too: {synced / t.upload_seconds:.2f}), download {down_ratio:.2f} (vs"
            f" copy+fsync {synced / t.download_seconds:.2f}; vs plain read"
            f" {t.read_seconds / t.download_seconds:.2f}, vs read+SHA-256"
            f" {t.read_hash_seconds / t.download_seconds:.2f})"
        )
        print(f"  downloaded SHA-256 equals the uploaded one: {'yes' if t.same_digest else 'NO'}")
        print("2. resident memory of the services")
        report_memory("during the upload", t.upload_memory)
        report_memory("during the download", t.download_memory)
        summary.append(
            f"download / plain copy: {down_ratio:.2f} (target >= {TARGET_DOWNLOAD_RATIO}:"
            f" {verdict(down_ratio >= TARGET_DOWNLOAD_RATIO)}); upload / plain copy:"
            f" {up_ratio:.2f}; upload / copy+fsync: {synced / t.upload_seconds:.2f}; download"
            f" {mb_per_s(t.size, t.download_seconds):.0f} MB/s, upload"
            f" {mb_per_s(t.size, t.upload_seconds):.0f} MB/s"
        )
        for name in t.download_memory.hwm:
            peak = max(t.upload_memory.peak[name], t.download_memory.peak[name]) * 1024 / 1e6
            hwm = t.download_memory.hwm[name] * 1024 / 1e6
            summary.append(
                f"{name} memory during the transfers: peak VmRSS {peak:.1f} MB, VmHWM {hwm:.1f}"
                f" MB (target < {TARGET_RSS_MB:.0f} MB: {verdict(hwm < TARGET_RSS_MB)})"
            )
    if backups is not None:
        tree = backups.tree
        print(
            f"3. backup of a volume of {tree.files} files in {tree.directories} directories,"
            f" {tree.bytes / MIB:.0f} MiB ({tree.random_bytes / MIB:.0f} MiB random,"
            f" the rest text), written in {backups.fill_seconds:.1f} s; gzip level"
            f" {COMPRESS_LEVEL}; MB/s of the volume's bytes"
        )
        print(
            f"  {'round':<6} {'tar|gzip s':>10} {'MB/s':>6} {'out MiB':>8} {'backup s':>9}"
            f" {'MB/s':>6} {'agent s':>8} {'file MiB':>9} {'ratio':>6} {'dl s':>6}"
            f" {'dl MB/s':>8} {'dl MiB':>7}"
        )
        for n, r in enumerate(backups.rounds):
            agent = f"{r.server_side_seconds:.2f}" if r.server_side_seconds is not None else "?"
            baseline_rate = mb_per_s(tree.bytes, r.baseline_seconds)
            download_rate = mb_per_s(r.download_bytes, r.download_seconds)
            print(
                f"  {n:<6} {r.baseline_seconds:>10.2f} {baseline_rate:>6.0f}"
                f" {r.baseline_bytes / MIB:>8.1f} {r.backup_seconds:>9.2f}"
                f" {mb_per_s(tree.bytes, r.backup_seconds):>6.0f} {agent:>8}"
                f" {r.backup_bytes / MIB:>9.1f} {r.baseline_seconds / r.backup_seconds:>6.2f}"
                f" {r.download_seconds:>6.2f} {download_rate:>8.0f} {r.download_bytes / MIB:>7.1f}"
            )
        print(
            "  (backup s: POST until GET says completed, polled every"
            f" {POLL_SECONDS * 1000:.0f} ms; agent s: the record's created_at to finished_at;"
            " file: the node's encrypted file; dl: the decrypted tar.gz through the control plane)"
        )
        if backups.listed_entries is not None:
            expected = tree.files + tree.directories
            print(
                f"  first downloaded backup lists {backups.listed_entries} entries with tar -tzf"
                f" ({expected} made)"
            )
        if backups.memory is not None:
            report_memory("during the backups and their downloads", backups.memory)
        ratio = statistics.median(r.baseline_seconds / r.backup_seconds for r in backups.rounds)
        download_rate = statistics.median(
            mb_per_s(r.download_bytes, r.download_seconds) for r in backups.rounds
        )
        summary.append(
            f"backup / tar|gzip -{COMPRESS_LEVEL} (median of rounds): {ratio:.2f} (target >="
            f" {TARGET_BACKUP_RATIO}: {verdict(ratio >= TARGET_BACKUP_RATIO)});"
            f" backup download {download_rate:.0f} MB/s"
        )
    elif backups_skipped:
        summary.append(f"backups: not measured ({backups_skipped})")
    print(f"total bench time {elapsed:.1f} s")
    for line in summary:
        print(line)


# --------------------------------------------------------------------------- main run


async def measure(
    args: argparse.Namespace,
    made: Made,
    panel_url: str,
    node_id: str,
    agent: Server,
    pids: dict[str, int],
) -> tuple[Transfers | None, Backups | None, str | None]:
    panel = Panel(panel_url)
    server_id: str | None = None
    try:
        owner_id = await panel.login()
        disk_mib = min(102_400, max(1024, args.size_mib + args.fill_mib + 1024))
        server_id = await create_game_server(
            panel, node_id, agent.base_url, owner_id, disk_mib, made
        )
        transfers = None
        if args.size_mib:
            transfers = await bench_transfers(
                panel, server_id, pids, args.size_mib * MIB, made.root
            )
        backups, skipped = None, None
        if args.fill_mib and args.backup_rounds:
            volume = made.root / "agent" / "data" / "volumes" / server_id
            try:
                backups = await bench_backups(panel, server_id, volume, pids, args, made.root)
            except (RuntimeError, TimeoutError) as err:
                skipped = str(err)  # a backup route answered an error, or a backup failed
        else:
            skipped = "--fill-mib 0 or --backup-rounds 0"
        return transfers, backups, skipped
    finally:
        INTERRUPTS.cleaning = True
        if server_id is not None:
            try:
                await panel.json("DELETE", f"/api/v1/servers/{server_id}", status=204)
                made.game_servers.remove(server_id)
            except (RuntimeError, aiohttp.ClientError, OSError) as err:
                print(
                    f"cleanup: server {server_id} not deleted via the API: {err}", file=sys.stderr
                )
        await panel.close()


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
            # Cancel the run; its finally blocks remove what it made.
            self.loop.call_soon_threadsafe(self.task.cancel)
            return
        raise SystemExit(128 + signum)


INTERRUPTS: Final = Interrupts()


async def _main_task(*args: Any) -> tuple[Transfers | None, Backups | None, str | None]:
    INTERRUPTS.loop, INTERRUPTS.task = asyncio.get_running_loop(), asyncio.current_task()
    try:
        return await measure(*args)
    finally:
        INTERRUPTS.loop = INTERRUPTS.task = None


@contextlib.contextmanager
def cleaned_up(made: Made) -> Iterator[None]:
    try:
        yield
    finally:
        INTERRUPTS.cleaning = True
        for server in made.servers:
            server.stop()
        for problem in made.remove_containers() + made.remove_network():
            print(f"cleanup: {problem}", file=sys.stderr)


def run(
    args: argparse.Namespace, made: Made
) -> tuple[Transfers | None, Backups | None, str | None]:
    root = made.root
    private = Ed25519PrivateKey.generate()
    key_file = root / "signing.key"
    write_private_key(key_file, private)
    env = panel_env(root, key_file, free_port())
    asyncio.run(prepare_database(env))
    panel = Server(
        "control-plane",
        [sys.executable, "-m", "control_plane", "serve"],
        int(env["STELLAR_PORT"]),
        "/healthz",
        root / "control-plane.log",
        root,
        env,
    )
    made.servers.append(panel)
    made.created_network = not network_exists()
    with cleaned_up(made), running([panel]):
        node_id = asyncio.run(register_node(panel.base_url))
        agent = agent_server(root, private, node_id)
        made.servers.append(agent)
        with running([agent]):
            assert panel.process is not None
            assert agent.process is not None
            pids = {"control plane": panel.process.pid, "agent": agent.process.pid}
            return asyncio.run(_main_task(args, made, panel.base_url, node_id, agent, pids))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--size-mib",
        type=int,
        default=2048,
        help="size of the uploaded and downloaded file; 0 skips 1 and 2 (default 2048)",
    )
    parser.add_argument(
        "--fill-mib",
        type=int,
        default=512,
        help="bytes of mixed files in the backed-up volume; 0 skips 3 (default 512)",
    )
    parser.add_argument(
        "--backup-rounds",
        type=int,
        default=2,
        help="alternating tar|gzip and backup pairs (default 2)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    args.load_before = os.getloadavg()[0]
    if min(args.size_mib, args.fill_mib, args.backup_rounds) < 0 or args.backup_rounds > 4:
        print("sizes must be at least 0, --backup-rounds 0 to 4", file=sys.stderr)
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
    build_test_images()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="stellar-bench-") as tmp:
        made = Made(Path(tmp))
        try:
            transfers, backups, skipped = run(args, made)
        except asyncio.CancelledError:
            print("interrupted: everything made was removed", file=sys.stderr)
            return 128 + signal.SIGTERM
    report(args, transfers, backups, skipped, time.perf_counter() - started)
    client_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"(this client's own peak RSS: {client_kib / 1024:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
