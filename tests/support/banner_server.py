"""``python -m tests.support.banner_server NAME=ADDRESS[@PORT] ...``: self-naming listeners.

Each ``NAME=ADDRESS`` (an IPv4 or IPv6 literal) gets a TCP listener on ``PORT``, or on a port
the kernel picks; every connection to it is answered with ``NAME`` and a newline, then closed.
Once all are bound the server prints one ``NAME PORT`` line per listener and ``ready``, so that
a test that started it with ``ip netns exec NS python -m …`` knows where they are. It runs
until killed.
"""

from __future__ import annotations

import ipaddress
import selectors
import socket
import sys


def _listen(where: str) -> socket.socket:
    address, _, port = where.partition("@")
    family = socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((address, int(port or 0)))
    listener.listen(16)
    return listener


def main(specs: list[str]) -> None:
    selector = selectors.DefaultSelector()
    for spec in specs:
        name, _, address = spec.partition("=")
        listener = _listen(address)
        selector.register(listener, selectors.EVENT_READ, name)
        print(f"{name} {listener.getsockname()[1]}", flush=True)
    print("ready", flush=True)
    while True:
        for key, _events in selector.select():
            ready = key.fileobj
            assert isinstance(ready, socket.socket)
            connection, _peer = ready.accept()
            with connection:
                connection.sendall(f"{key.data}\n".encode())


if __name__ == "__main__":
    main(sys.argv[1:])
