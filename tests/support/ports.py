"""Ports for the servers tests and benchmarks start on 127.0.0.1, chosen so that nothing
else takes them between the choice and the bind.

A port the kernel hands out for ``bind(("127.0.0.1", 0))`` comes from its ephemeral range,
the range every outgoing connection's source port comes from too: between a test choosing
one and its server binding it, any connection opened meanwhile (to PostgreSQL, to another
server) may take it, and the server fails with "address already in use" (the fleet bench
chooses 55 at once and opens hundreds of connections before they bind). These come from
below that range, at random, each checked free when chosen, and not handed out again by this
process while it may still be in use.
"""

from __future__ import annotations

import collections
import random
import socket
from typing import Final

# The lowest port chosen (below: well-known services, PostgreSQL's and Redis's among them).
FLOOR: Final = 20000
# Ports handed out lately: not again (a test's server may not have bound it yet).
_HANDED_OUT: collections.deque[int] = collections.deque(maxlen=2048)
_RANDOM = random.SystemRandom()


def _ephemeral_low() -> int:
    """Where the kernel's ephemeral range begins (32768 by default)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as ports:
            return int(ports.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now and that no outgoing connection will take."""
    ceiling = _ephemeral_low()
    if ceiling - FLOOR >= 4096:
        for _ in range(1000):
            port = _RANDOM.randrange(FLOOR, ceiling)
            if port not in _HANDED_OUT and _bindable(port):
                _HANDED_OUT.append(port)
                return port
    # A kernel whose ephemeral range leaves too little below it: the kernel's choice.
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.append(port)
            return port
