"""check_url and the pinned resolver: every way of writing a blocked address is refused.

No test here opens a socket: names are answered by injected resolvers, and IP literals are
checked without any lookup. The expected outcomes come from the networks listed below (taken
from the design), not from shared.ssrf's own table.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from ipaddress import (
    IPv4Address,
    IPv4Network,
    IPv6Address,
    IPv6Network,
    ip_address,
    ip_network,
)

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from yarl import URL

from shared.outbound import CheckedAddressResolver, _checked_target_for_request
from shared.ssrf import (
    CheckedTarget,
    HostResolver,
    OutboundFetchFailed,
    UnsafeURL,
    check_url,
)

BLOCKED_IPV4 = tuple(
    IPv4Network(n)
    for n in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "100.100.100.200/32",
        "169.254.169.254/32",
    )
)
BLOCKED_IPV6 = tuple(
    IPv6Network(n)
    for n in (
        "::/128",
        "::1/128",
        "64:ff9b:1::/48",
        "2001:db8::/32",
        "fc00::/7",
        "fd00:ec2::254/128",
        "fe80::/10",
        "fec0::/10",
        "ff00::/8",
    )
)
# Allocated to regional registries and routed on the internet.
PUBLIC_IPV4 = tuple(
    IPv4Network(n) for n in ("1.0.0.0/8", "8.0.0.0/7", "80.0.0.0/4", "151.101.0.0/16")
)
PUBLIC_IPV6 = tuple(IPv6Network(n) for n in ("2400::/12", "2600::/12", "2a00::/12"))


def resolver_answering(answers: dict[str, Sequence[str]]) -> HostResolver:
    """A resolver that knows only ``answers``; any other name fails like NXDOMAIN."""

    async def resolve(host: str) -> Sequence[str]:
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return answers[host]

    return resolve


async def resolver_never_called(host: str) -> Sequence[str]:
    raise AssertionError(f"no lookup expected, got one for {host!r}")


REFUSED_WITHOUT_LOOKUP = [
    "http://127.0.0.1",
    "http://127.1",
    "http://127.0.1",
    "http://0x7f.1",
    "http://0x7f000001",
    "http://2130706433",
    "http://017700000001",
    "http://0177.0.0.1",
    "http://0x7F.0.0x0.01",
    "http://127.0.0.1./",
    "http://0.0.0.0",
    "http://0",
    "http://[::]",
    "http://[::1]",
    "http://[0:0:0:0:0:0:0:1]",
    "http://[::ffff:127.0.0.1]",
    "http://[::ffff:7f00:1]",
    "http://[::127.0.0.1]",
    "http://[64:ff9b::7f00:1]",
    "http://[64:ff9b::10.0.0.1]",
    "http://[64:ff9b:1::5db8:d822]",
    "http://[2002:a00:1::1]",
    "http://[2002:5db8:d822::1]",
    "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]",
    "http://169.254.169.254/latest/meta-data",
    "http://[fd00:ec2::254]/latest/meta-data",
    "http://100.100.100.200/latest/meta-data",
    "http://100.64.0.1",
    "http://198.18.0.1",
    "http://10.0.0.1",
    "http://172.16.0.1",
    "http://192.168.1.1",
    "http://192.0.2.1",
    "http://224.0.0.1",
    "http://255.255.255.255",
    "http://[fc00::1]",
    "http://[fe80::1]",
    "http://[fe80::1%25eth0]",
    "http://[fec0::1]",
    "http://[ff02::1]",
    "http://[2001:db8::1]",
    "http://user@127.0.0.1/",
    "http://user:pw@example.com/",
    "http://:pw@example.com/",
    "http://example.com\\@127.0.0.1/",
    "http://exa mple.com/",
    "http://%31%32%37.0.0.1/",
    "http://example..com/",
    "http://example.com../",
    "http://1.2.3.4.5/",
    "http://256.0.0.1/",
    "http://1.2.65536/",
    "http://08.0.0.1/",
    "http://example.0x1f/",
    "http://example.com:0/",
    "file:///etc/passwd",
    "ftp://example.com/x",
    "gopher://example.com",
    "data:text/plain,hello",
    "javascript:alert(1)",
    "example.com/path",
    "//example.com",
    "/relative/path",
    "http:///path",
    "",
]


@pytest.mark.parametrize("url", REFUSED_WITHOUT_LOOKUP)
async def test_url_is_refused_without_any_lookup(url: str) -> None:
    with pytest.raises(UnsafeURL):
        await check_url(url, resolver=resolver_never_called)


@pytest.mark.parametrize(
    "answers",
    [
        ["10.0.0.7"],
        ["127.0.0.1"],
        ["169.254.169.254"],
        ["::1"],
        ["fe80::1%eth0"],
        ["::ffff:192.168.0.1"],
        ["93.184.216.34", "10.0.0.7"],
        ["2606:2800:220:1::1", "fd00::1"],
    ],
)
async def test_name_is_refused_when_any_resolved_address_is_not_public(
    answers: list[str],
) -> None:
    resolver = resolver_answering({"intranet.example.com": answers})

    with pytest.raises(UnsafeURL, match="resolves to a private or reserved address") as caught:
        await check_url("https://intranet.example.com/hook", resolver=resolver)

    assert all(answer not in caught.value.message for answer in answers)


async def test_refusal_is_an_api_error_with_status_400_and_code_unsafe_url() -> None:
    with pytest.raises(UnsafeURL) as caught:
        await check_url("http://127.0.0.1/")

    assert caught.value.status == 400
    assert caught.value.body()["error"]["code"] == "unsafe_url"


async def test_name_that_does_not_resolve_is_a_fetch_failure_not_a_refusal() -> None:
    with pytest.raises(OutboundFetchFailed, match="could not be resolved"):
        await check_url("http://nowhere.example/", resolver=resolver_answering({}))
    with pytest.raises(OutboundFetchFailed, match="could not be resolved"):
        await check_url("http://empty.example/", resolver=resolver_answering({"empty.example": []}))


async def test_resolver_answer_that_is_not_an_address_is_refused() -> None:
    resolver = resolver_answering({"odd.example": ["not-an-address"]})

    with pytest.raises(UnsafeURL):
        await check_url("http://odd.example/", resolver=resolver)


@pytest.mark.parametrize(
    ("url", "expected_url", "expected_address"),
    [
        ("http://93.184.216.34/x", "http://93.184.216.34/x", "93.184.216.34"),
        ("http://1572395042/x", "http://93.184.216.34/x", "93.184.216.34"),
        ("http://0x5d.0xb8.0xd8.0x22/x", "http://93.184.216.34/x", "93.184.216.34"),
        ("http://0135.0270.0330.042/x", "http://93.184.216.34/x", "93.184.216.34"),
        ("http://93.184.55330/x", "http://93.184.216.34/x", "93.184.216.34"),
        ("http://[::ffff:93.184.216.34]/x", "http://93.184.216.34/x", "93.184.216.34"),
        (
            "https://[2606:2800:220:1::1]:8443/x",
            "https://[2606:2800:220:1::1]:8443/x",
            "2606:2800:220:1::1",
        ),
        (
            "http://[64:ff9b::5db8:d822]/x",
            "http://[64:ff9b::5db8:d822]/x",
            "64:ff9b::5db8:d822",
        ),
    ],
)
async def test_public_ip_literal_is_accepted_in_canonical_form(
    url: str, expected_url: str, expected_address: str
) -> None:
    target = await check_url(url, resolver=resolver_never_called)

    assert str(target.url) == expected_url
    assert [str(a) for a in target.addresses] == [expected_address]
    assert target.host == expected_address
    assert target.is_ip_literal


async def test_public_name_is_accepted_with_every_address_port_and_host_for_tls() -> None:
    resolver = resolver_answering(
        {"hooks.example.com": ["93.184.216.34", "2606:2800:220:1::1", "93.184.216.34"]}
    )

    target = await check_url("https://Hooks.Example.COM./deliver?x=1", resolver=resolver)

    assert target.host == "hooks.example.com"
    assert target.port == 443
    assert target.addresses == (IPv4Address("93.184.216.34"), IPv6Address("2606:2800:220:1::1"))
    assert target.url.path_qs == "/deliver?x=1"
    assert not target.is_ip_literal


async def test_allowlist_for_tests_covers_resolved_names_but_never_ip_literals() -> None:
    allow = frozenset({ip_network("127.0.0.1/32")})
    resolver = resolver_answering({"local-test-server.test": ["127.0.0.1"]})

    target = await check_url(
        "http://local-test-server.test:8080/", resolver=resolver, allow_for_tests=allow
    )
    assert target.addresses == (IPv4Address("127.0.0.1"),)

    with pytest.raises(UnsafeURL):
        await check_url("http://127.0.0.1:8080/", resolver=resolver, allow_for_tests=allow)


def pinned(host: str, *addresses: str) -> CheckedTarget:
    """A target as check_url would have returned it for ``host``."""
    return CheckedTarget(
        url=URL(f"http://{host}/"),
        host=host,
        port=80,
        addresses=tuple(ip_address(a) for a in addresses),
        is_ip_literal=False,
    )


async def test_pinned_resolver_answers_only_with_the_checked_addresses_of_the_checked_host() -> (
    None
):
    resolver = CheckedAddressResolver()
    token = _checked_target_for_request.set(
        pinned("hooks.example.com", "93.184.216.34", "2606:2800:220:1::1")
    )
    try:
        results = await resolver.resolve("hooks.example.com.", 443, socket.AF_UNSPEC)
        only_v6 = await resolver.resolve("hooks.example.com", 443, socket.AF_INET6)
        with pytest.raises(OSError, match="no checked address"):
            await resolver.resolve("other.example.com", 443, socket.AF_UNSPEC)
    finally:
        _checked_target_for_request.reset(token)

    assert [(r["host"], r["port"], r["family"]) for r in results] == [
        ("93.184.216.34", 443, socket.AF_INET),
        ("2606:2800:220:1::1", 443, socket.AF_INET6),
    ]
    assert [r["host"] for r in only_v6] == ["2606:2800:220:1::1"]


async def test_pinned_resolver_refuses_when_no_target_was_checked() -> None:
    with pytest.raises(OSError, match="no checked address"):
        await CheckedAddressResolver().resolve("hooks.example.com", 443, socket.AF_UNSPEC)


# --- properties: every encoding of every blocked address is refused -------------------------


def _ipv4_number(value: int, base: str, zero_padding: int, upper: bool) -> str:
    if base == "oct":
        return "0" * (1 + zero_padding) + format(value, "o")
    if base == "hex":
        digits = "0" * zero_padding + format(value, "X" if upper else "x")
        return ("0X" if upper else "0x") + digits
    return str(value)


@st.composite
def ipv4_textual_forms(draw: st.DrawFn, address: IPv4Address) -> str:
    """The host written dotted, as one number, or in 2/3/4 parts, each part in any base."""
    value = int(address)
    parts_count = draw(st.integers(1, 4))
    leading = [(value >> (8 * (3 - i))) & 0xFF for i in range(parts_count - 1)]
    last = value & ((1 << (8 * (5 - parts_count))) - 1)
    parts = [
        _ipv4_number(
            number,
            draw(st.sampled_from(["dec", "oct", "hex"])),
            draw(st.integers(0, 3)),
            draw(st.booleans()),
        )
        for number in [*leading, last]
    ]
    return ".".join(parts) + draw(st.sampled_from(["", "."]))


def _hex_words(address: IPv4Address) -> str:
    value = int(address)
    return f"{value >> 16:x}:{value & 0xFFFF:x}"


@st.composite
def ipv4_in_ipv6_forms(draw: st.DrawFn, address: IPv4Address) -> str:
    """The address carried in IPv6: mapped, IPv4-compatible, NAT64 (both spellings)."""
    form = draw(
        st.sampled_from(
            [
                f"::ffff:{address}",
                f"::ffff:{_hex_words(address)}",
                f"0:0:0:0:0:ffff:{_hex_words(address)}",
                f"::{address}",
                f"64:ff9b::{address}",
                f"64:ff9b::{_hex_words(address)}",
                f"64:ff9b:0:0:0:0:{_hex_words(address)}",
            ]
        )
    )
    return "[" + (form.upper() if draw(st.booleans()) else form) + "]"


def address_in(network: IPv4Network | IPv6Network) -> st.SearchStrategy[int]:
    return st.integers(0, network.num_addresses - 1).map(lambda i: int(network[i]))


@st.composite
def blocked_ipv4_hosts(draw: st.DrawFn) -> str:
    network = draw(st.sampled_from(BLOCKED_IPV4))
    address = IPv4Address(draw(address_in(network)))
    return draw(st.one_of(ipv4_textual_forms(address), ipv4_in_ipv6_forms(address)))


@st.composite
def blocked_ipv6_hosts(draw: st.DrawFn) -> str:
    network = draw(st.sampled_from(BLOCKED_IPV6))
    address = IPv6Address(draw(address_in(network)))
    text = draw(st.sampled_from([address.compressed, address.exploded]))
    return "[" + (text.upper() if draw(st.booleans()) else text) + "]"


@st.composite
def urls_around(draw: st.DrawFn, hosts: st.SearchStrategy[str]) -> str:
    scheme = draw(st.sampled_from(["http", "https", "HTTP"]))
    port = draw(st.sampled_from(["", ":80", ":8080", ":443"]))
    path = draw(st.sampled_from(["", "/", "/latest/meta-data", "/hook?x=1"]))
    return f"{scheme}://{draw(hosts)}{port}{path}"


@settings(max_examples=400, deadline=None)
@given(url=urls_around(st.one_of(blocked_ipv4_hosts(), blocked_ipv6_hosts())))
async def test_every_encoding_of_a_blocked_address_is_refused(url: str) -> None:
    with pytest.raises(UnsafeURL):
        await check_url(url, resolver=resolver_never_called)


@settings(max_examples=200, deadline=None)
@given(
    network=st.sampled_from(BLOCKED_IPV4 + BLOCKED_IPV6),
    data=st.data(),
    public=st.sampled_from(["93.184.216.34", "2606:2800:220:1::1"]),
)
async def test_name_resolving_to_any_blocked_address_is_refused(
    network: IPv4Network | IPv6Network, data: st.DataObject, public: str
) -> None:
    blocked = str(network[data.draw(st.integers(0, network.num_addresses - 1))])
    answers = data.draw(st.permutations([public, blocked]))
    resolver = resolver_answering({"hooks.example.com": answers})

    with pytest.raises(UnsafeURL):
        await check_url("https://hooks.example.com/", resolver=resolver)


@st.composite
def public_ipv4(draw: st.DrawFn) -> IPv4Address:
    return IPv4Address(draw(address_in(draw(st.sampled_from(PUBLIC_IPV4)))))


@settings(max_examples=300, deadline=None)
@given(data=st.data(), address=public_ipv4())
async def test_every_encoding_of_a_public_ipv4_address_is_accepted(
    data: st.DataObject, address: IPv4Address
) -> None:
    host = data.draw(st.one_of(ipv4_textual_forms(address), ipv4_in_ipv6_forms(address)))
    if host.lower().startswith("[::") and not host.lower().startswith("[::ffff:"):
        return  # IPv4-compatible (::a.b.c.d) is deprecated and refused for every address

    target = await check_url(f"http://{host}/", resolver=resolver_never_called)

    nat64 = host.lower().startswith("[64:ff9b:")
    assert target.addresses == (
        (IPv6Address((0x64FF9B << 96) | int(address)),) if nat64 else (address,)
    )


@settings(max_examples=200, deadline=None)
@given(
    ipv6=st.sampled_from(PUBLIC_IPV6).flatmap(address_in).map(IPv6Address),
    ipv4=public_ipv4(),
)
async def test_name_resolving_only_to_public_addresses_is_accepted(
    ipv6: IPv6Address, ipv4: IPv4Address
) -> None:
    resolver = resolver_answering({"hooks.example.com": [str(ipv4), str(ipv6)]})

    target = await check_url("https://hooks.example.com/x", resolver=resolver)

    assert target.addresses == (ipv4, ipv6)
    literal = await check_url(f"http://[{ipv6}]/", resolver=resolver_never_called)
    assert literal.addresses == (ipv6,)
