"""The resolvers that games' DNS queries go to, as Docker picks them.

On a user-defined network a container's ``resolv.conf`` names ``127.0.0.11``: dockerd's DNS
server inside the container's own namespace. What it cannot answer (any name but a
container's) it forwards to the host's nameservers, and it does so from the container's
namespace: the query leaves through the bridge like any other game traffic. A private or
link-local resolver (a cloud's VPC resolver, 169.254.169.253, a LAN's 10.x) would be refused
with the rest, so the egress policy lets port 53 through to exactly these resolvers.

Docker reads ``/etc/resolv.conf``, or systemd-resolved's list of upstream servers when
``/etc/resolv.conf`` names only its local stub, and never gives containers a loopback server;
this module reads the same files the same way.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Final

HOST_RESOLV_CONF: Final = Path("/etc/resolv.conf")
RESOLVED_UPSTREAMS: Final = Path("/run/systemd/resolve/resolv.conf")
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def nameservers(text: str) -> tuple[IPAddress, ...]:
    """The ``nameserver`` addresses of a resolv.conf, in order (zone ids dropped)."""
    found: list[IPAddress] = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            try:
                address = ipaddress.ip_address(fields[1].partition("%")[0])
            except ValueError:
                continue
            if address not in found:
                found.append(address)
    return tuple(found)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def host_resolvers(
    resolv_conf: Path = HOST_RESOLV_CONF, upstreams: Path = RESOLVED_UPSTREAMS
) -> tuple[IPAddress, ...]:
    """The non-loopback resolvers dockerd forwards containers' queries to."""
    servers = nameservers(_read(resolv_conf))
    if servers and all(server.is_loopback for server in servers):
        servers = nameservers(_read(upstreams))
    return tuple(server for server in servers if not server.is_loopback)
