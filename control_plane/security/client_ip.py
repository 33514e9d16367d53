"""The client's IP: the socket peer, unless that peer is a configured trusted proxy."""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Sequence

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


UNKNOWN = "unknown"


def _parse(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip()
    # Some load balancers append "address:port" ("[v6]:port" for IPv6).
    if text.startswith("[") and "]" in text:
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


# The socket peer, parsed once per address (a few µs of every request otherwise); the
# forwarded hops, which clients write, are parsed as they come and never kept.
_peer = functools.lru_cache(maxsize=1024)(_parse)


def client_ip(peer: str | None, forwarded_for: str | None, trusted: Sequence[IPNetwork]) -> str:
    """Walk ``X-Forwarded-For`` from the right only while each hop is a trusted proxy.

    A header sent by anyone who is not a trusted proxy is ignored entirely, so a client
    cannot choose the address its rate limits and audit rows are keyed on.
    """
    current = _peer(peer or "")
    if current is None:
        return peer or UNKNOWN
    if not forwarded_for or not any(current in net for net in trusted):
        return str(current)
    for hop in reversed(forwarded_for.split(",")):
        address = _parse(hop)
        if address is None:
            # A trusted proxy vouched for a client we cannot read: it is not the proxy
            # (whose address may be allow-listed, for metrics), and no one in particular.
            return UNKNOWN
        current = address
        if not any(current in net for net in trusted):
            break
    return str(current)
