"""``python -m tests.support.dns_stub ANSWER ADDRESS...``: a DNS server that knows one answer.

Listens on UDP port 53 of each ADDRESS (IPv4) and answers every ``A`` query, whatever the name,
with the IPv4 address ANSWER; any other query gets an empty answer. Prints ``ready`` once
bound; runs until killed. Enough for dockerd's embedded DNS to forward a game's query to it.
"""

from __future__ import annotations

import ipaddress
import selectors
import socket
import sys
from typing import Final

QTYPE_A: Final = b"\x00\x01"
TTL: Final = (60).to_bytes(4, "big")


def reply(query: bytes, answer: bytes) -> bytes | None:
    """The response to one query (a single question), or None if it does not parse."""
    end = 12
    try:
        while query[end]:
            end += 1 + query[end]
        qtype = query[end + 1 : end + 3]
    except IndexError:
        return None
    question = query[12 : end + 5]
    found = qtype == QTYPE_A
    # id, flags (response, recursion desired and available), one question, 0/1 answer.
    header = query[:2] + b"\x81\x80" + b"\x00\x01" + (b"\x00\x01" if found else b"\x00\x00")
    records = b"\xc0\x0c" + QTYPE_A + b"\x00\x01" + TTL + b"\x00\x04" + answer if found else b""
    return header + b"\x00\x00\x00\x00" + question + records


def main(argv: list[str]) -> None:
    answer = ipaddress.IPv4Address(argv[0]).packed
    selector = selectors.DefaultSelector()
    for address in argv[1:]:
        server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        server.bind((address, 53))
        selector.register(server, selectors.EVENT_READ)
    print("ready", flush=True)
    while True:
        for key, _events in selector.select():
            ready = key.fileobj
            assert isinstance(ready, socket.socket)
            query, peer = ready.recvfrom(4096)
            response = reply(query, answer)
            if response is not None:
                ready.sendto(response, peer)


if __name__ == "__main__":
    main(sys.argv[1:])
