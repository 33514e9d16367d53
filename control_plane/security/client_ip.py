"""The client's IP: the socket peer, unless that peer is a configured trusted proxy."""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Sequence

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


UNKNOWN = "unknown"


def _parse(text: str) -> Address | None:
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


@functools.lru_cache(maxsize=1024)
def _peer(text: str) -> tuple[Address, str] | None:
    """The socket peer and its text, parsed once per address (a few µs of every request
    otherwise); the forwarded hops, which clients write, are parsed as they come and never
    kept."""
    address = _parse(text)
    return None if address is None else (address, str(address))


def client_ip(peer: str | None, forwarded_for: str | None, trusted: Sequence[IPNetwork]) -> str:
    """Walk ``X-Forwarded-For`` from the right only while each hop is a trusted proxy.

    A header sent by anyone who is not a trusted proxy is ignored entirely, so a client
    cannot choose the address its rate limits and audit rows are keyed on.
    """
    parsed = _peer(peer or "")
    if parsed is None:
        return peer or UNKNOWN
    current, text = parsed
    if not forwarded_for or not any(current in net for net in trusted):
        return text
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
