"""Names a user gives (a webhook's host) are looked up on threads of their own: a domain whose
name servers never answer cannot hold the threads every other lookup of the process needs.

``getaddrinfo`` keeps its thread until the system resolver gives up, whatever its caller's
time limit. Before, these lookups ran on the loop's shared threads (libuv's four under
uvloop): a user saving a few webhooks on such a domain made every lookup of the control plane
wait — a node's address, the database's, other users' webhooks.

Run in a mount and network namespace of its own (``unshare``): only its loopback, a name
server on 127.0.0.1:53 that never answers, and /etc/hosts naming the hosts that must stay
quick. The machine's own resolver configuration is not touched.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("ip") is None,
    reason="needs root, unshare and ip (a namespace with a name server that never answers)",
)

PROBE = """
import asyncio, json, os, socket, threading, time

import uvloop

from shared.ssrf import resolve_with_system_dns


def silent_name_server() -> None:
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 53))
    while True:
        server.recvfrom(4096)


async def main() -> None:
    async def a_users_lookup(n: int) -> None:
        try:
            async with asyncio.timeout(1):  # the caller gives up; the thread goes on
                await resolve_with_system_dns(f"hook{n}.never-answers.example")
        except (TimeoutError, OSError):
            pass

    await asyncio.gather(*(a_users_lookup(n) for n in range(6)))
    loop = asyncio.get_running_loop()
    started = time.monotonic()
    await loop.getaddrinfo("node.test", 8443)  # the process's own (aiohttp's resolver)
    own = time.monotonic() - started
    started = time.monotonic()
    await resolve_with_system_dns("hooks.test")  # another user's webhook
    other = time.monotonic() - started
    print(json.dumps({"own": own, "other": other}), flush=True)
    os._exit(0)  # not waiting for the hung lookups' threads at exit


threading.Thread(target=silent_name_server, daemon=True).start()
uvloop.install()
asyncio.run(main())
"""


def test_a_domain_that_never_answers_does_not_hold_everybody_elses_lookups(
    tmp_path: Path,
) -> None:
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.1\noptions timeout:5 attempts:2\n")
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost node.test hooks.test\n")
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE)
    inside = (
        "ip link set lo up && "
        f"mount --bind {resolv} /etc/resolv.conf && mount --bind {hosts} /etc/hosts && "
        f"exec {sys.executable} {probe}"
    )
    done = subprocess.run(
        ["unshare", "--mount", "--net", "sh", "-c", inside],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    took = json.loads(done.stdout.strip().splitlines()[-1])
    # Answered from /etc/hosts: milliseconds. Behind the hung lookups it was ~10 s each.
    assert took["own"] < 2.0, took
    assert took["other"] < 2.0, took
