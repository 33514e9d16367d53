"""What a game may reach, as an nftables ruleset: a pure function of the bridge and settings.

Traffic that enters the host from the agent's bridge goes through one of two hooks:

- ``input`` when it is for the node itself: the bridge's gateway address, the node's public or
  private addresses. Only replies, IPv6 neighbour discovery, DNS to the resolvers, and the
  ports the games publish (another game, reached through dockerd's proxy) get through.
- ``forward`` when it is for another host, or for another container on the bridge. Replies,
  DNS to the resolvers and the operator's ``egress_allow`` get through; other games' containers
  and every loopback, link-local (cloud metadata), private, CGNAT, ULA, multicast or otherwise
  reserved address are refused; the rest (the internet) is allowed.

Refused packets are rejected (``admin-prohibited``: the game fails at once instead of waiting
for a timeout) and counted. The table only ever refuses: its chains accept by default, and an
accept here does not override a drop in Docker's or the operator's own tables.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final, Literal

from node_agent.docker.network import AGENT_NETWORK, BRIDGE_NAME_PATTERN, PublishedPort

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Protocol = Literal["tcp", "udp"]
TABLE_PREFIX: Final = "stellar_egress"
REJECT: Final = "counter reject with icmpx admin-prohibited"
# IPv6 on the bridge needs these to reach the node (ARP, for IPv4, is not IP at all).
NEIGHBOUR_DISCOVERY: Final = (
    "icmpv6 type { nd-router-solicit, nd-neighbor-solicit, nd-neighbor-advert } accept"
)

# Never reached from a game unless allowed (RFC 6890 and the IANA special-purpose registries).
# 198.18.0.0/15 (benchmarking) is left out on purpose: no hosting network uses it, and the
# tests stand it in for the internet.
BLOCKED_V4: Final = tuple(
    ipaddress.IPv4Network(text)
    for text in (
        "0.0.0.0/8",  # "this network"
        "10.0.0.0/8",  # private
        "100.64.0.0/10",  # carrier-grade NAT (also some clouds' internal services)
        "127.0.0.0/8",  # loopback
        "169.254.0.0/16",  # link-local: cloud metadata (169.254.169.254), AWS DNS, ...
        "172.16.0.0/12",  # private (Docker's own networks)
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",  # documentation
        "192.168.0.0/16",  # private
        "198.51.100.0/24",  # documentation
        "203.0.113.0/24",  # documentation
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, and the limited broadcast address
    )
)
BLOCKED_V6: Final = tuple(
    ipaddress.IPv6Network(text)
    for text in (
        "::/128",  # unspecified
        "::1/128",  # loopback
        "::ffff:0:0/96",  # IPv4-mapped: the IPv4 rules must not be bypassed
        "64:ff9b:1::/48",  # NAT64 for local networks (RFC 8215)
        "100::/64",  # discard-only
        "2001:db8::/32",  # documentation
        "fc00::/7",  # unique local (incl. AWS's metadata fd00:ec2::254)
        "fe80::/10",  # link-local
        "fec0::/10",  # site-local (deprecated)
        "ff00::/8",  # multicast
    )
)
_PORTS: Final = re.compile(r"^(tcp|udp)/(\d{1,5})(?:-(\d{1,5}))?$")


@dataclass(frozen=True)
class EgressAllowance:
    """One ``egress_allow`` entry: a network games may reach, optionally only on some ports."""

    network: IPNetwork
    protocol: Protocol | None = None
    first_port: int | None = None
    last_port: int | None = None

    @classmethod
    def parse(cls, text: str) -> EgressAllowance:
        """``NETWORK`` or ``NETWORK PROTO/PORT[-PORT]``, e.g. ``"10.20.0.0/16"``,
        ``"10.20.0.5 tcp/5432"``, ``"fd12:3456::/48 udp/27015-27030"``."""
        parts = text.split()
        if len(parts) not in (1, 2):
            raise ValueError(f"{text!r} is not 'NETWORK' or 'NETWORK tcp|udp/PORT[-PORT]'")
        try:
            network = ipaddress.ip_network(parts[0], strict=True)
        except ValueError as err:
            try:
                meant = ipaddress.ip_network(parts[0], strict=False)
            except ValueError:
                raise ValueError(f"{parts[0]!r} is not an IP address or network") from err
            raise ValueError(f"{parts[0]!r} has host bits set: did you mean {meant}?") from err
        if network.prefixlen == 0:
            raise ValueError(f"{text!r} would allow everything; list the networks games need")
        if len(parts) == 1:
            return cls(network)
        match = _PORTS.match(parts[1])
        if match is None:
            raise ValueError(f"{parts[1]!r} is not tcp/PORT, udp/PORT or PROTO/FIRST-LAST")
        protocol: Protocol = "tcp" if match.group(1) == "tcp" else "udp"
        first = int(match.group(2))
        last = int(match.group(3) or first)
        if not 1 <= first <= last <= 65535:
            raise ValueError(f"{parts[1]!r}: ports go from 1 to 65535, first <= last")
        return cls(network, protocol, first, last)

    def rule(self) -> str:
        """The nft rule that lets games through to this network."""
        family = "ip" if self.network.version == 4 else "ip6"
        match = f"{family} daddr {_network(self.network)}"
        if self.protocol is not None:
            ports = str(self.first_port)
            if self.last_port != self.first_port:
                ports = f"{self.first_port}-{self.last_port}"
            match += f" {self.protocol} dport {ports}"
        return f'{match} accept comment "egress_allow"'


@dataclass(frozen=True)
class EgressPolicy:
    """Everything the ruleset depends on."""

    bridge: str = AGENT_NETWORK
    allow: tuple[EgressAllowance, ...] = ()
    dns_servers: tuple[IPAddress, ...] = ()
    published: frozenset[PublishedPort] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        table_name(self.bridge)


def table_name(bridge: str) -> str:
    """``stellar_egress`` for the default bridge, ``stellar_egress_<bridge>`` for another."""
    # The name goes into the ruleset's text: nothing in it may need quoting.
    if not re.match(BRIDGE_NAME_PATTERN, bridge):
        raise ValueError(f"{bridge!r} is not a Linux bridge name")
    return TABLE_PREFIX if bridge == AGENT_NETWORK else f"{TABLE_PREFIX}_{bridge}"


def _network(network: IPNetwork) -> str:
    if network.prefixlen == network.max_prefixlen:
        return str(network.network_address)
    return str(network)


def _set(name: str, kind: str, elements: Iterable[str], *, interval: bool = False) -> list[str]:
    lines = [f"\tset {name} {{", f"\t\ttype {kind}"]
    if interval:
        lines.append("\t\tflags interval")
    listed = list(dict.fromkeys(elements))
    # nft refuses "elements = { }": an empty set has no elements line at all.
    if listed:
        lines.append(f"\t\telements = {{ {', '.join(listed)} }}")
    lines.append("\t}")
    return lines


def _chain(name: str, rules: Iterable[str], hook: str | None = None) -> list[str]:
    lines = [f"\tchain {name} {{"]
    if hook is not None:
        # Before Docker's filter chains (priority 0), so the counters see every attempt.
        lines.append(f"\t\ttype filter hook {hook} priority filter - 10; policy accept;")
    lines.extend(f"\t\t{rule}" for rule in rules)
    lines.append("\t}")
    return lines


def render_ruleset(policy: EgressPolicy) -> str:
    """The ``nft -f`` script that replaces the bridge's egress table in one transaction."""
    table = table_name(policy.bridge)
    bridge = f'"{policy.bridge}"'
    dns = [
        "ip daddr @dns_v4 meta l4proto { tcp, udp } th dport 53 accept",
        "ip6 daddr @dns_v6 meta l4proto { tcp, udp } th dport 53 accept",
    ]
    published = sorted(policy.published, key=lambda p: (str(p.address), p.protocol, p.port))
    body = [
        *_set("blocked_v4", "ipv4_addr", (_network(n) for n in BLOCKED_V4), interval=True),
        *_set("blocked_v6", "ipv6_addr", (_network(n) for n in BLOCKED_V6), interval=True),
        *_set("dns_v4", "ipv4_addr", (str(a) for a in policy.dns_servers if a.version == 4)),
        *_set("dns_v6", "ipv6_addr", (str(a) for a in policy.dns_servers if a.version == 6)),
        *_set(
            "published_v4",
            "ipv4_addr . inet_proto . inet_service",
            (f"{p.address} . {p.protocol} . {p.port}" for p in published if _is(p, 4)),
        ),
        *_set(
            "published_v6",
            "ipv6_addr . inet_proto . inet_service",
            (f"{p.address} . {p.protocol} . {p.port}" for p in published if _is(p, 6)),
        ),
        *_set(
            "published_any",
            "inet_proto . inet_service",
            (f"{p.protocol} . {p.port}" for p in published if p.address is None),
        ),
        *_chain("forward", [f"iifname {bridge} jump games_to_hosts"], hook="forward"),
        *_chain("input", [f"iifname {bridge} jump games_to_node"], hook="input"),
        *_chain(
            "games_to_hosts",
            [
                "ct state established,related accept",
                f'oifname {bridge} {REJECT} comment "another game: only via published ports"',
                *dns,
                *(allowance.rule() for allowance in policy.allow),
                f"ip daddr @blocked_v4 {REJECT}",
                f"ip6 daddr @blocked_v6 {REJECT}",
            ],
        ),
        *_chain(
            "games_to_node",
            [
                "ct state established,related accept",
                NEIGHBOUR_DISCOVERY,
                *dns,
                "ip daddr . meta l4proto . th dport @published_v4 accept",
                "ip6 daddr . meta l4proto . th dport @published_v6 accept",
                "meta l4proto . th dport @published_any accept",
                "meta pkttype != host counter drop",
                REJECT,
            ],
        ),
    ]
    header = [
        f"# stellar-agent's egress policy for the games on bridge {policy.bridge}",
        "# (deploy/README.md). The agent replaces this table whole at each start and whenever",
        "# a game starts or stops; edit the agent's settings, not this table.",
        # Declaring the table first makes the delete succeed when it does not exist yet.
        f"table inet {table}",
        f"delete table inet {table}",
        f"table inet {table} {{",
    ]
    return "\n".join([*header, *body, "}"]) + "\n"


def render_removal(bridge: str) -> str:
    """The ``nft -f`` script that removes the bridge's egress table (fine if there is none)."""
    table = table_name(bridge)
    return f"table inet {table}\ndelete table inet {table}\n"


def _is(port: PublishedPort, version: int) -> bool:
    return port.address is not None and port.address.version == version
