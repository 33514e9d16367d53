"""The client's IP: the socket peer, unless that peer is a configured trusted proxy."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _parse(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def client_ip(peer: str | None, forwarded_for: str | None, trusted: Sequence[IPNetwork]) -> str:
    """Walk ``X-Forwarded-For`` from the right only while each hop is a trusted proxy.

    A header sent by anyone who is not a trusted proxy is ignored entirely, so a client
    cannot choose the address its rate limits and audit rows are keyed on.
    """
    current = _parse(peer or "")
    if current is None:
        return peer or "unknown"
    if not forwarded_for or not any(current in net for net in trusted):
        return str(current)
    for hop in reversed(forwarded_for.split(",")):
        address = _parse(hop)
        if address is None:
            break
        current = address
        if not any(current in net for net in trusted):
            break
    return str(current)
