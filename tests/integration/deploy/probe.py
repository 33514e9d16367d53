"""A network probe the deploy tests run inside a namespace (``ip netns exec NS python -m``).

connect HOST PORT TIMEOUT            prints open, refused or timeout
https-get URL FINGERPRINT DEADLINE   polls until an answer; prints "STATUS BODY"; the
                                     connection is pinned like the control plane's
"""

from __future__ import annotations

import asyncio
import socket
import sys
import time

import aiohttp

from control_plane.nodes.tls import pinned_fingerprint


def connect(host: str, port: int, timeout: float) -> str:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return "open"
    except ConnectionRefusedError:
        return "refused"
    except TimeoutError:
        return "timeout"


async def https_get(url: str, fingerprint: str, deadline_seconds: float) -> str:
    deadline = time.monotonic() + deadline_seconds
    timeout = aiohttp.ClientTimeout(total=2)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while True:
            try:
                async with session.get(url, ssl=pinned_fingerprint(fingerprint)) as response:
                    return f"{response.status} {await response.text()}"
            except (aiohttp.ClientConnectionError, TimeoutError) as err:
                if isinstance(err, aiohttp.ServerFingerprintMismatch):
                    return "fingerprint-mismatch"
                if time.monotonic() > deadline:
                    return f"unreachable {err!r}"
            await asyncio.sleep(0.1)


def main(argv: list[str]) -> int:
    if argv[0] == "connect":
        print(connect(argv[1], int(argv[2]), float(argv[3])))
    elif argv[0] == "https-get":
        print(asyncio.run(https_get(argv[1], argv[2], float(argv[3]))))
    else:
        print(f"unknown probe {argv[0]!r}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
