"""The one guard for requests to user-given URLs (webhooks, "pull file from URL").

    check_url(url)             parse strictly, normalise the host (decimal, octal, hex and short
                               IPv4 forms; IPv4 embedded in IPv6), resolve a name once, refuse
                               unless every address is plainly public -> CheckedTarget
    OutboundClient.fetch(url)  (shared/outbound.py) check_url, then connect only to the checked
                               addresses (the connector never does a DNS lookup of its own),
                               follow redirects by hand re-checking every hop, stream the body
                               under a byte cap

Exceptions, all ``ApiError`` so the error middleware renders them:

    ApiError
    ├── UnsafeURL                 (400 unsafe_url)  every refusal by the policy
    └── OutboundFetchFailed       (502 outbound_fetch_failed)  the name does not resolve,
        │                         connect/TLS failure, timeout, too many redirects
        └── OutboundBodyTooLarge  (502 outbound_body_too_large)  more than ``max_bytes``

Refusal messages name the host the user gave, never the internal address it resolved to.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import re
import socket
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from typing import ClassVar, Final

from yarl import URL

from shared.errors import ApiError

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network
HostResolver = Callable[[str], Awaitable[Sequence[str]]]
"""Turns a host name into address strings; the default asks the system (getaddrinfo)."""


class UnsafeURL(ApiError):
    """The URL is not one the panel will fetch: wrong scheme, odd form, or not a public host."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "unsafe_url"


class OutboundFetchFailed(ApiError):
    """The URL was allowed but fetching it failed (DNS, connect, TLS, timeout, redirects)."""

    status: ClassVar[int] = 502
    code: ClassVar[str] = "outbound_fetch_failed"


class OutboundBodyTooLarge(OutboundFetchFailed):
    """The remote body is larger than the caller's byte cap."""

    code: ClassVar[str] = "outbound_body_too_large"


CLOUD_METADATA_ADDRESSES: Final[frozenset[IPAddress]] = frozenset(
    ip_address(a) for a in ("169.254.169.254", "169.254.170.2", "fd00:ec2::254", "100.100.100.200")
)
"""Named for the record; every one of them is also inside a blocked network below."""

BLOCKED_NETWORKS: Final[tuple[IPNetwork, ...]] = tuple(
    ip_network(n)
    for n in (
        "0.0.0.0/8",  # "this network", incl. the unspecified address
        "10.0.0.0/8",
        "100.64.0.0/10",  # carrier-grade NAT (and Alibaba's metadata address)
        "127.0.0.0/8",
        "169.254.0.0/16",  # link-local (and the AWS/GCP/Azure metadata address)
        "172.16.0.0/12",
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",  # documentation
        "192.88.99.0/24",  # 6to4 relay anycast
        "192.168.0.0/16",
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # documentation
        "203.0.113.0/24",  # documentation
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, incl. broadcast
        "::/96",  # unspecified, loopback, deprecated IPv4-compatible
        "::ffff:0:0:0/96",  # IPv4-translated (SIIT)
        "64:ff9b:1::/48",  # local-use NAT64: its embedding is site-specific
        "100::/64",  # discard-only
        "2001::/23",  # IETF protocol assignments, incl. Teredo and benchmarking
        "2001:db8::/32",  # documentation
        "2002::/16",  # 6to4: deprecated, and Python versions disagree on whether it is global
        "3fff::/20",  # documentation
        "5f00::/16",  # SRv6 SIDs
        "fc00::/7",  # unique local
        "fe80::/10",  # link-local
        "fec0::/10",  # site-local
        "ff00::/8",  # multicast
    )
)

_NAT64_WELL_KNOWN: Final = IPv6Network("64:ff9b::/96")
_SCHEMES: Final = frozenset({"http", "https"})
_MAX_URL_LENGTH: Final = 8192
_HOST_LABEL: Final = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")
_NUMERIC_LABEL: Final = re.compile(r"^(?:[0-9]+|0x[0-9a-f]*)$", re.IGNORECASE)
_UNSAFE_CHARACTERS: Final = re.compile(r"[\x00-\x20\x7f\\]")
_PRIVATE_MESSAGE: Final = "resolves to a private or reserved address"


@dataclass(frozen=True, slots=True)
class CheckedTarget:
    """A URL that passed the policy, with the only addresses a connection may go to.

    ``url`` is what to request: an IP literal is rewritten to its canonical form, a name is kept
    so that the Host header and TLS (SNI and certificate check) use it. ``host`` is that name or
    canonical address, lower case, without a trailing dot.
    """

    url: URL
    host: str
    port: int
    addresses: tuple[IPAddress, ...]
    is_ip_literal: bool


def embedded_ipv4(address: IPv6Address) -> tuple[IPv4Address, ...]:
    """The IPv4 addresses an IPv6 address carries (mapped, NAT64, 6to4, Teredo), if any."""
    if address.ipv4_mapped is not None:
        return (address.ipv4_mapped,)
    if address in _NAT64_WELL_KNOWN:
        return (IPv4Address(int(address) & 0xFFFFFFFF),)
    if address.sixtofour is not None:
        return (address.sixtofour,)
    if address.teredo is not None:
        return address.teredo
    return ()


def is_public_address(address: IPAddress) -> bool:
    """True only for a global unicast address that hides no blocked IPv4 address inside."""
    if isinstance(address, IPv6Address) and address.scope_id is not None:
        return False  # a zone id only means something for link-local addresses
    if address in CLOUD_METADATA_ADDRESSES or not address.is_global:
        return False
    if any(address in network for network in BLOCKED_NETWORKS):
        return False
    if isinstance(address, IPv6Address):
        return all(is_public_address(inner) for inner in embedded_ipv4(address))
    return True


def _parse_ipv4_number(text: str) -> int | None:
    if text[:2].lower() == "0x":
        digits, base = text[2:], 16
    elif len(text) > 1 and text.startswith("0"):
        digits, base = text[1:], 8
    else:
        digits, base = text, 10
    try:
        return int(digits, base) if digits.isascii() and digits.isalnum() else None
    except ValueError:
        return None


def _parse_legacy_ipv4(labels: list[str]) -> IPv4Address:
    """inet_aton's forms: 1 to 4 parts, each decimal, octal or hex; the last fills the rest."""
    numbers = [_parse_ipv4_number(label) for label in labels]
    if len(labels) > 4 or any(n is None for n in numbers):
        raise UnsafeURL("the host looks like an IPv4 address but is not a valid one")
    *leading, last = [n for n in numbers if n is not None]
    if any(n > 0xFF for n in leading) or last >= 1 << (8 * (5 - len(numbers))):
        raise UnsafeURL("the host looks like an IPv4 address but is not a valid one")
    value = last
    for index, number in enumerate(leading):
        value += number << (8 * (3 - index))
    return IPv4Address(value)


def parse_host(raw_host: str) -> IPAddress | str:
    """Normalise a URL host: an IP address in canonical form, or a lower-case name.

    Refuses what a resolver or a socket could read differently from this check: percent
    signs, zone ids, empty labels, and names whose last label is a number.
    """
    host = raw_host.lower()
    if ":" in host:
        if "%" in host:
            raise UnsafeURL("IPv6 zone ids are not allowed")
        try:
            v6 = IPv6Address(host)
        except ValueError as err:
            raise UnsafeURL("the host is not a valid IPv6 address") from err
        return v6.ipv4_mapped or v6
    if host.endswith("."):
        host = host[:-1]
    labels = host.split(".")
    if _NUMERIC_LABEL.fullmatch(labels[-1]):
        return _parse_legacy_ipv4(labels)
    if len(host) > 253 or not all(_HOST_LABEL.fullmatch(label) for label in labels):
        raise UnsafeURL("the host is not a valid host name")
    return host


def _parse_url(url: str) -> tuple[URL, str, int]:
    """The parsed URL with its raw host and port, or UnsafeURL."""
    if len(url) > _MAX_URL_LENGTH:
        raise UnsafeURL("the URL is too long")
    if _UNSAFE_CHARACTERS.search(url):
        raise UnsafeURL("the URL contains whitespace, control characters or a backslash")
    try:
        parsed = URL(url)
    except (ValueError, TypeError) as err:
        raise UnsafeURL("the URL cannot be parsed") from err
    if parsed.scheme not in _SCHEMES:
        raise UnsafeURL("only absolute http and https URLs are allowed")
    if parsed.raw_user is not None or parsed.raw_password is not None:
        raise UnsafeURL("URLs with a user name or password are not allowed")
    if not parsed.raw_host or not parsed.port:
        raise UnsafeURL("the URL has no host or no valid port")
    return parsed, parsed.raw_host, parsed.port


class _NameLookups:
    """Lookups of names that users give (webhooks, pulls) on threads of their own.

    ``getaddrinfo`` blocks a thread until the system resolver gives up (10 s and more for a
    domain whose name servers never answer), and cancelling the ``await`` does not end it. On
    the loop's shared threads (libuv's four under uvloop) a user saving webhooks of such a
    domain held every thread, and every other lookup of the process waited: nodes, the
    database, SMTP, other users' webhooks. Here they have ``THREADS`` threads apart, and one
    domain (its last two labels) at most ``PER_DOMAIN`` of them until its lookups end; more
    lookups of it wait, within their caller's time limit.
    """

    THREADS: Final = 16
    PER_DOMAIN: Final = 4
    POLL_SECONDS: Final = 0.05

    def __init__(self) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(
            self.THREADS, thread_name_prefix="user-dns"
        )
        self._lock = threading.Lock()
        self._busy: dict[str, int] = {}

    @staticmethod
    def domain(host: str) -> str:
        return ".".join(host.rstrip(".").lower().rsplit(".", 2)[-2:])

    def in_flight(self, domain: str) -> int:
        with self._lock:
            return self._busy.get(domain, 0)

    def _take(self, domain: str) -> bool:
        with self._lock:
            if self._busy.get(domain, 0) >= self.PER_DOMAIN:
                return False
            self._busy[domain] = self._busy.get(domain, 0) + 1
            return True

    def _release(self, domain: str) -> None:
        with self._lock:
            left = self._busy.pop(domain) - 1
            if left:
                self._busy[domain] = left

    async def resolve(self, host: str) -> list[str]:
        domain = self.domain(host)
        # Polled: a slot is freed on a lookup thread, for whichever loop asked (an asyncio
        # Event belongs to one loop).
        while not self._take(domain):  # noqa: ASYNC110
            await asyncio.sleep(self.POLL_SECONDS)
        try:
            lookup = self._pool.submit(socket.getaddrinfo, host, None, type=socket.SOCK_STREAM)
        except BaseException:
            self._release(domain)
            raise
        # Released when the thread ends, not when the caller stops waiting.
        lookup.add_done_callback(lambda _: self._release(domain))
        infos = await asyncio.wrap_future(lookup)
        return [str(info[4][0]) for info in infos]


_LOOKUPS: Final = _NameLookups()


async def resolve_with_system_dns(host: str) -> list[str]:
    """Every address the system resolver (getaddrinfo) gives for ``host``, a name a user
    gave: on threads apart from the process's own lookups (``_NameLookups``)."""
    return await _LOOKUPS.resolve(host)


async def _resolve_name(name: str, resolver: HostResolver) -> tuple[IPAddress, ...]:
    try:
        answers = await resolver(name)
    except OSError as err:
        raise OutboundFetchFailed(f"{name!r} could not be resolved") from err
    addresses: list[IPAddress] = []
    for answer in answers:
        try:
            address = ip_address(answer)
        except ValueError as err:
            raise UnsafeURL(f"{name!r} resolves to something that is not an address") from err
        if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise OutboundFetchFailed(f"{name!r} could not be resolved")
    return tuple(addresses)


async def check_url(
    url: str,
    *,
    resolver: HostResolver = resolve_with_system_dns,
    allow_for_tests: frozenset[IPNetwork] = frozenset(),
) -> CheckedTarget:
    """Accept ``url`` only if it is http(s) and every address of its host is public.

    A name is resolved exactly once, here; connect only to ``CheckedTarget.addresses``.
    ``allow_for_tests`` lets tests reach a local server through a *name* that resolves into
    one of these networks; IP literals in URLs are never exempt. Production code passes nothing.
    Raises UnsafeURL on refusal, OutboundFetchFailed if the name does not resolve.
    """
    parsed, raw_host, port = _parse_url(url)
    host = parse_host(raw_host)
    if not isinstance(host, str):
        if not is_public_address(host):
            raise UnsafeURL(f"{raw_host!r} is a private or reserved address")
        return CheckedTarget(
            url=parsed.with_host(str(host)),
            host=str(host),
            port=port,
            addresses=(host,),
            is_ip_literal=True,
        )
    addresses = await _resolve_name(host, resolver)
    for address in addresses:
        allowed_for_tests = any(address in network for network in allow_for_tests)
        if not allowed_for_tests and not is_public_address(address):
            raise UnsafeURL(f"{host!r} {_PRIVATE_MESSAGE}")
    return CheckedTarget(url=parsed, host=host, port=port, addresses=addresses, is_ip_literal=False)
