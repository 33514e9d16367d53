"""What SFTP through the agent costs: a big upload and download, against OpenSSH.

Run ``python bench/sftp.py`` as root with dockerd running and OpenSSH's client and server
installed (``--help`` for the options). It builds the local test images, starts a real
``python -m node_agent serve`` (``directory`` backend, SFTP on a free loopback port), creates
one server through the signed API and pushes an access table with one user key. Then, in the
same run and alternating ``--rounds`` times, OpenSSH's ``sftp -b`` uploads one ``--size-mib``
file of random bytes and downloads it again:

1. through the agent (asyncssh, every request through the confined file layer), into the
   server's volume;
2. through ``/usr/sbin/sshd`` with OpenSSH's own ``sftp-server`` on another loopback port,
   into a directory on the same disk.

Each download's SHA-256 must equal the upload's. It prints MB/s for each, the agent's share of
OpenSSH's throughput (target: at least 0.3), and the agent's peak ``VmRSS`` during its
transfers (sampled every 50 ms). It asserts nothing about time. Everything it made goes
away at the end: the server, the agent, sshd and the temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import aiohttp

# Run as a script (python bench/x.py), the repository root is not on the path yet.
REPO_ROOT: Final = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench.files import RssSampler, mb_per_s, write_random_file  # noqa: E402
from tests.integration.node_agent.sftp_client import (  # noqa: E402
    SftpTarget,
    UserKey,
    push_access,
    sftp_target,
    table,
    user_row,
    username,
)
from tests.support.agent_process import AgentProcess, SigningKey, free_port  # noqa: E402
from tests.support.containers import SignedAgentClient, build_test_images  # noqa: E402
from tests.support.factories import server_spec  # noqa: E402

MIB: Final = 1024 * 1024
TARGET_RATIO: Final = 0.3
SSHD: Final = Path("/usr/sbin/sshd")
SFTP_SERVER: Final = Path("/usr/lib/openssh/sftp-server")


@dataclass
class Figures:
    agent_up: list[float] = field(default_factory=list)
    agent_down: list[float] = field(default_factory=list)
    sshd_up: list[float] = field(default_factory=list)
    sshd_down: list[float] = field(default_factory=list)
    agent_idle_kib: int = 0
    agent_peak_kib: int = 0


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(4 * MIB):
            digest.update(chunk)
    return digest.hexdigest()


def batch(port: int, user: str, key: UserKey, known_hosts: Path, commands: str) -> float:
    """Seconds ``sftp -b -`` took to run ``commands``; raises if it failed."""
    args = ["sftp", "-q", "-b", "-", "-P", str(port), "-i", str(key.path)]
    for option in (
        "IdentitiesOnly=yes",
        f"UserKnownHostsFile={known_hosts}",
        "GlobalKnownHostsFile=/dev/null",
        "StrictHostKeyChecking=yes",
        "BatchMode=yes",
    ):
        args += ["-o", option]
    started = time.perf_counter()
    result = subprocess.run(
        [*args, f"{user}@127.0.0.1"], input=commands, capture_output=True, text=True, check=False
    )
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"sftp failed: {result.stderr}")
    return elapsed


@contextlib.contextmanager
def running_sshd(root: Path, key: UserKey) -> Iterator[tuple[int, Path]]:
    """sshd with OpenSSH's sftp-server on a free loopback port; its port and known_hosts."""
    root.mkdir()
    host_key = root / "ssh_host_ed25519_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)], check=True)
    (root / "authorized_keys").write_text(key.public + "\n")
    port = free_port()
    config = root / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"Port {port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {host_key}",
                f"AuthorizedKeysFile {root / 'authorized_keys'}",
                f"PidFile {root / 'sshd.pid'}",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PermitRootLogin prohibit-password",
                "StrictModes no",
                "UsePAM no",
                f"Subsystem sftp {SFTP_SERVER}",
                "",
            ]
        )
    )
    # sshd refuses to start without its privilege-separation directory.
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    log = (root / "sshd.log").open("wb")
    process = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(config)], stderr=log)
    known_hosts = root / "known_hosts"
    public = (root / "ssh_host_ed25519_key.pub").read_text().split()
    known_hosts.write_text(f"[127.0.0.1]:{port} {public[0]} {public[1]}\n")
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            time.sleep(0.05)
        yield port, known_hosts
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


async def prepare_agent(
    root: Path, key: UserKey, signing: SigningKey, http: aiohttp.ClientSession
) -> tuple[AgentProcess, uuid.UUID, SftpTarget]:
    agent = AgentProcess(
        root / "agent",
        {signing.kid: signing.public_text},
        settings={"storage_backend": "directory", "sftp_port": free_port()},
    )
    agent.start()
    spec = server_spec()
    answer = await SignedAgentClient(agent, signing, http).create(spec)
    if answer.status != 201:
        raise RuntimeError(f"server not created: {answer.body}")
    server_id = uuid.UUID(spec["uuid"])
    status = await push_access(agent, signing, http, table((server_id, [user_row("bench", key)])))
    if status != 204:
        raise RuntimeError(f"access table refused: {status}")
    return agent, server_id, await sftp_target(agent, signing, http, root / "known")


async def measure(root: Path, size: int, rounds: int) -> Figures:
    figures = Figures()
    key = UserKey.make(root / "keys")
    signing = SigningKey.generate()
    source = root / "source.bin"
    digest = await asyncio.to_thread(write_random_file, source, size)
    sshd_dir = root / "sshd-files"
    sshd_dir.mkdir()
    async with aiohttp.ClientSession() as http:
        agent, server_id, target = await prepare_agent(root, key, signing, http)
        client = SignedAgentClient(agent, signing, http)
        try:
            assert agent._process is not None
            pid = agent._process.pid
            user = username("bench", server_id)
            with running_sshd(root / "sshd", key) as (sshd_port, sshd_known):
                for number in range(rounds):
                    back = root / f"back-{number}.bin"
                    with RssSampler({"agent": pid}) as sampler:
                        up = await asyncio.to_thread(
                            batch, target.port, user, key, target.known_hosts(),
                            f"put {source} /bench.bin\n",
                        )  # fmt: skip
                        down = await asyncio.to_thread(
                            batch, target.port, user, key, target.known_hosts(),
                            f"get /bench.bin {back}\n",
                        )  # fmt: skip
                    figures.agent_idle_kib = figures.agent_idle_kib or sampler.before["agent"]
                    figures.agent_peak_kib = max(figures.agent_peak_kib, sampler.peak["agent"])
                    if sha256(back) != digest:
                        raise RuntimeError("the agent's download differs from the upload")
                    back.unlink()
                    figures.agent_up.append(mb_per_s(size, up))
                    figures.agent_down.append(mb_per_s(size, down))
                    me = os.environ.get("USER", "root")
                    up = await asyncio.to_thread(
                        batch, sshd_port, me, key, sshd_known,
                        f"put {source} {sshd_dir}/bench.bin\n",
                    )  # fmt: skip
                    down = await asyncio.to_thread(
                        batch, sshd_port, me, key, sshd_known, f"get {sshd_dir}/bench.bin {back}\n"
                    )
                    if sha256(back) != digest:
                        raise RuntimeError("sshd's download differs from the upload")
                    back.unlink()
                    figures.sshd_up.append(mb_per_s(size, up))
                    figures.sshd_down.append(mb_per_s(size, down))
        finally:
            await client.delete(server_id)
            agent.stop()
    return figures


def report(figures: Figures, size: int) -> None:
    def line(name: str, values: list[float]) -> float:
        median = statistics.median(values)
        print(f"  {name:<24} {median:8.1f} MB/s  (rounds: {', '.join(f'{v:.1f}' for v in values)})")
        return median

    print(f"SFTP, {size // MIB} MiB, OpenSSH sftp -b as the client")
    agent_up = line("agent upload", figures.agent_up)
    sshd_up = line("sshd upload", figures.sshd_up)
    agent_down = line("agent download", figures.agent_down)
    sshd_down = line("sshd download", figures.sshd_down)
    for name, ours, theirs in (("upload", agent_up, sshd_up), ("download", agent_down, sshd_down)):
        ratio = ours / theirs if theirs else 0.0
        verdict = "met" if ratio >= TARGET_RATIO else "NOT met"
        print(f"  {name} ratio agent/sshd: {ratio:.2f} (target >= {TARGET_RATIO}: {verdict})")
    print(
        f"  agent VmRSS: idle {figures.agent_idle_kib / 1024:.1f} MiB, "
        f"peak during transfers {figures.agent_peak_kib / 1024:.1f} MiB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=2)
    options = parser.parse_args()
    for program in ("sftp", "ssh-keygen", str(SSHD), str(SFTP_SERVER)):
        if shutil.which(program) is None and not Path(program).exists():
            sys.exit(f"{program} is missing: apt-get install openssh-client openssh-server")
    build_test_images()
    size = options.size_mib * MIB
    with tempfile.TemporaryDirectory(prefix="bench-sftp-") as temp:
        figures = asyncio.run(measure(Path(temp), size, options.rounds))
    report(figures, size)


if __name__ == "__main__":
    main()
