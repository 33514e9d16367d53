"""The egress policy as text: what is blocked, what the operator may allow, how it is rendered.

``tests/integration/deploy/test_egress_ruleset.py`` loads these rulesets into a real kernel;
``tests/integration/node_agent/test_egress.py`` attacks them from inside a game container.
"""

from __future__ import annotations

import ipaddress
import itertools
import uuid
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from node_agent.docker.network import PublishedPort, published_port
from node_agent.egress.dns import host_resolvers, nameservers
from node_agent.egress.policy import (
    BLOCKED_V4,
    BLOCKED_V6,
    EgressAllowance,
    EgressPolicy,
    IPNetwork,
    render_removal,
    render_ruleset,
    table_name,
)
from node_agent.settings import AgentSettings
from shared.command_keys import public_key_text
from tests.support.agent_process import SigningKey


def blocked(text: str) -> bool:
    address = ipaddress.ip_address(text)
    networks = BLOCKED_V4 if address.version == 4 else BLOCKED_V6
    return any(address in network for network in networks)


@pytest.mark.parametrize(
    "address",
    [
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack metadata
        "169.254.169.253",  # AWS DNS
        "fd00:ec2::254",  # AWS metadata over IPv6
        "10.0.0.1",
        "172.16.0.1",
        "172.31.255.254",
        "192.168.1.1",
        "100.64.0.1",  # CGNAT
        "100.100.100.200",  # Alibaba Cloud metadata (CGNAT range)
        "127.0.0.1",
        "0.0.0.0",
        "224.0.0.251",
        "255.255.255.255",
        "::1",
        "::",
        "::ffff:169.254.169.254",
        "fe80::1",
        "fc00::1",
        "ff02::1",
    ],
)
def test_what_games_must_never_reach_is_blocked(address: str) -> None:
    assert blocked(address)


@pytest.mark.parametrize(
    "address", ["1.1.1.1", "8.8.8.8", "198.18.0.1", "2606:4700:4700::1111", "2a00:1450::1"]
)
def test_the_internet_is_not_blocked(address: str) -> None:
    assert not blocked(address)


def test_blocked_ranges_do_not_overlap_so_nft_takes_them_as_intervals() -> None:
    for one, other in itertools.combinations(BLOCKED_V4, 2):
        assert not one.overlaps(other), (one, other)
    for one6, other6 in itertools.combinations(BLOCKED_V6, 2):
        assert not one6.overlaps(other6), (one6, other6)


def test_every_blocked_range_is_in_the_ruleset() -> None:
    ruleset = render_ruleset(EgressPolicy())
    every: tuple[IPNetwork, ...] = (*BLOCKED_V4, *BLOCKED_V6)
    for network in every:
        shown = network.network_address if network.prefixlen == network.max_prefixlen else network
        assert f" {shown}," in ruleset or f" {shown} }}" in ruleset, network


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10.20.0.0/16", EgressAllowance(ipaddress.ip_network("10.20.0.0/16"))),
        ("10.30.0.5", EgressAllowance(ipaddress.ip_network("10.30.0.5/32"))),
        (
            "10.30.0.5 tcp/5432",
            EgressAllowance(ipaddress.ip_network("10.30.0.5/32"), "tcp", 5432, 5432),
        ),
        (
            " fd12:3456::/48   udp/27015-27030 ",
            EgressAllowance(ipaddress.ip_network("fd12:3456::/48"), "udp", 27015, 27030),
        ),
    ],
)
def test_allowances_parse(text: str, expected: EgressAllowance) -> None:
    assert EgressAllowance.parse(text) == expected


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("10.20.0.1/16", "did you mean 10.20.0.0/16"),
        ("db.internal", "not an IP address or network"),
        ("0.0.0.0/0", "would allow everything"),
        ("::/0", "would allow everything"),
        ("10.0.0.0/8 icmp/1", "is not tcp/PORT"),
        ("10.0.0.0/8 tcp", "is not tcp/PORT"),
        ("10.0.0.0/8 tcp/0", "ports go from 1 to 65535"),
        ("10.0.0.0/8 tcp/70000", "ports go from 1 to 65535"),
        ("10.0.0.0/8 tcp/90-80", "first <= last"),
        ("10.0.0.0/8 tcp/80 udp/53", "is not 'NETWORK'"),
        ("", "is not 'NETWORK'"),
    ],
)
def test_bad_allowances_are_refused_with_the_reason(text: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        EgressAllowance.parse(text)


def test_allowances_become_accept_rules_before_the_blocked_ranges() -> None:
    policy = EgressPolicy(
        allow=(
            EgressAllowance.parse("10.20.0.0/16"),
            EgressAllowance.parse("10.30.0.5 tcp/5432"),
            EgressAllowance.parse("fd12::/48 udp/27015-27030"),
        )
    )
    lines = [line.strip() for line in render_ruleset(policy).splitlines()]
    rules = [
        'ip daddr 10.20.0.0/16 accept comment "egress_allow"',
        'ip daddr 10.30.0.5 tcp dport 5432 accept comment "egress_allow"',
        'ip6 daddr fd12::/48 udp dport 27015-27030 accept comment "egress_allow"',
    ]
    first_refusal = lines.index("ip daddr @blocked_v4 counter reject with icmpx admin-prohibited")
    for rule in rules:
        # In the chain for other hosts only: an allowance never opens the node itself.
        assert lines.count(rule) == 1
        assert lines.index(rule) < first_refusal
    assert lines.index("chain games_to_hosts {") < lines.index(rules[0])


def test_the_ruleset_replaces_its_own_table_in_one_script() -> None:
    text = render_ruleset(EgressPolicy())
    lines = text.splitlines()
    # Declaring the table first makes the delete work when it does not exist yet.
    assert lines.index("table inet stellar_egress") < lines.index(
        "delete table inet stellar_egress"
    )
    assert lines.index("delete table inet stellar_egress") < lines.index(
        "table inet stellar_egress {"
    )
    assert [line for line in lines if line.startswith("table") or "delete" in line] == [
        "table inet stellar_egress",
        "delete table inet stellar_egress",
        "table inet stellar_egress {",
    ]
    assert "flush" not in text  # never anyone else's rules


def test_chains_hook_input_and_forward_for_the_bridge_only() -> None:
    text = render_ruleset(EgressPolicy(bridge="games1"))
    assert "table inet stellar_egress_games1 {" in text
    assert 'iifname "games1" jump games_to_hosts' in text
    assert 'iifname "games1" jump games_to_node' in text
    assert "type filter hook forward priority filter - 10; policy accept;" in text
    assert "type filter hook input priority filter - 10; policy accept;" in text
    assert 'oifname "games1" counter reject' in text
    assert "policy drop" not in text


def test_dns_servers_and_published_ports_land_in_their_sets() -> None:
    policy = EgressPolicy(
        dns_servers=(ipaddress.ip_address("10.0.0.2"), ipaddress.ip_address("fd00::53")),
        published=frozenset(
            {
                PublishedPort("tcp", 25565, ipaddress.ip_address("172.18.0.1")),
                PublishedPort("udp", 27015, ipaddress.ip_address("2001:db8::7")),
                PublishedPort("tcp", 7777),
            }
        ),
    )
    sets = _sets(render_ruleset(policy))
    assert sets["dns_v4"] == "10.0.0.2"
    assert sets["dns_v6"] == "fd00::53"
    assert sets["published_v4"] == "172.18.0.1 . tcp . 25565"
    assert sets["published_v6"] == "2001:db8::7 . udp . 27015"
    assert sets["published_any"] == "tcp . 7777"


def test_empty_sets_have_no_elements_line() -> None:
    sets = _sets(render_ruleset(EgressPolicy()))
    for name in ("dns_v4", "dns_v6", "published_v4", "published_v6", "published_any"):
        assert sets[name] is None
    assert "elements = { }" not in render_ruleset(EgressPolicy())


def _sets(text: str) -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    current = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("set "):
            current = stripped.split()[1]
            found[current] = None
        elif current and stripped.startswith("elements = {"):
            found[current] = stripped.removeprefix("elements = {").removesuffix("}").strip()
        elif stripped == "}":
            current = None
    return found


def test_table_names() -> None:
    assert table_name("stellar0") == "stellar_egress"
    assert table_name("steg-1a2b3c") == "stellar_egress_steg-1a2b3c"
    assert render_removal("stellar0") == (
        "table inet stellar_egress\ndelete table inet stellar_egress\n"
    )


@pytest.mark.parametrize(
    "bridge", ['a"b', "x; flush ruleset", "-lead", "way-too-long-name", "", "br 0"]
)
def test_a_bridge_name_that_would_need_quoting_is_refused(bridge: str) -> None:
    with pytest.raises(ValueError, match="not a Linux bridge name"):
        EgressPolicy(bridge=bridge)
    with pytest.raises(ValueError, match="not a Linux bridge name"):
        render_removal(bridge)


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (
            {"IP": "0.0.0.0", "PrivatePort": 25565, "PublicPort": 25565, "Type": "tcp"},
            PublishedPort("tcp", 25565),
        ),
        (
            {"IP": "::", "PrivatePort": 25565, "PublicPort": 25565, "Type": "udp"},
            PublishedPort("udp", 25565),
        ),
        (
            {"IP": "172.18.0.1", "PrivatePort": 7777, "PublicPort": 7777, "Type": "tcp"},
            PublishedPort("tcp", 7777, ipaddress.ip_address("172.18.0.1")),
        ),
        ({"PrivatePort": 25565, "Type": "tcp"}, None),  # exposed, not published
        ({"IP": "0.0.0.0", "PrivatePort": 1, "PublicPort": 1, "Type": "sctp"}, None),
    ],
)
def test_published_ports_from_dockers_container_list(
    entry: dict[str, Any], expected: PublishedPort | None
) -> None:
    assert published_port(entry) == expected


def test_nameservers_are_read_as_docker_reads_them(tmp_path: Path) -> None:
    text = (
        "# generated\nsearch example.com\nnameserver 10.255.255.53\nnameserver fe80::1%eth0\n"
        "nameserver 10.255.255.53\nnameserver bogus\noptions edns0\n"
    )
    assert nameservers(text) == (
        ipaddress.ip_address("10.255.255.53"),
        ipaddress.ip_address("fe80::1"),
    )
    resolv, upstreams = tmp_path / "resolv.conf", tmp_path / "upstream.conf"
    upstreams.write_text("nameserver 10.0.0.2\nnameserver 127.0.0.1\n")
    resolv.write_text("nameserver 127.0.0.53\n")
    # Only systemd-resolved's stub: Docker uses resolved's upstream servers instead.
    assert host_resolvers(resolv, upstreams) == (ipaddress.ip_address("10.0.0.2"),)
    resolv.write_text("nameserver 127.0.0.1\nnameserver 192.168.1.1\n")
    assert host_resolvers(resolv, upstreams) == (ipaddress.ip_address("192.168.1.1"),)
    assert host_resolvers(tmp_path / "missing", tmp_path / "missing-too") == ()


def _settings(**changes: Any) -> AgentSettings:
    key = SigningKey.generate()
    return AgentSettings.model_validate(
        {
            "node_id": str(uuid.uuid4()),
            "data_dir": "/var/lib/stellar-agent",
            "trusted_keys": {key.kid: public_key_text(key.public_key)},
            **changes,
        }
    )


def test_egress_settings_default_to_nothing_extra_and_the_hosts_resolvers() -> None:
    settings = _settings()
    assert settings.docker_network == "stellar0"
    assert settings.egress_allowances == ()
    assert settings.egress_dns is None


def test_egress_settings_are_parsed() -> None:
    settings = _settings(
        egress_allow=["10.20.0.0/16", "10.30.0.5 tcp/5432"], egress_dns=["10.0.0.2", "fd00::53"]
    )
    assert settings.egress_allowances == (
        EgressAllowance.parse("10.20.0.0/16"),
        EgressAllowance.parse("10.30.0.5 tcp/5432"),
    )
    assert settings.egress_dns == (
        ipaddress.ip_address("10.0.0.2"),
        ipaddress.ip_address("fd00::53"),
    )


def test_every_bad_egress_setting_is_reported_at_once() -> None:
    with pytest.raises(ValidationError) as caught:
        _settings(
            egress_allow=["10.20.0.1/16", "10.0.0.0/8 tcp/0"],
            egress_dns=["127.0.0.53", "fe80::1%eth0"],
            docker_network="no spaces here",
        )
    text = str(caught.value)
    for complaint in ("did you mean 10.20.0.0/16", "from 1 to 65535", "127.0.0.53", "pattern"):
        assert complaint in text
    with pytest.raises(ValidationError, match="without a zone"):
        _settings(egress_dns=["fe80::1%eth0"])
