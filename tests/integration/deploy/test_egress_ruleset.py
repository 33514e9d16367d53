"""The egress ruleset in a real kernel: it loads, replaces itself whole, and comes off cleanly.

Most tests load it in a network namespace of their own. The ones that drive the agent's own
loader (``nft -f -`` in the agent's namespace, which is the host's) use a table named after a
bridge that exists nowhere but in the test, and remove it.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from node_agent.docker.network import PublishedPort
from node_agent.egress import nft
from node_agent.egress.nft import EgressError, load_script, load_script_now
from node_agent.egress.policy import (
    EgressAllowance,
    EgressPolicy,
    render_removal,
    render_ruleset,
    table_name,
)
from node_agent.provision.errors import InstallError
from node_agent.provision.uninstall import remove_egress_table


def _unavailable() -> str | None:
    if os.geteuid() != 0:
        return "needs root to load nftables rules"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install iproute2 nftables)"
    return None


pytestmark = pytest.mark.skipif(bool(reason := _unavailable()), reason=reason or "")


def nft_in(netns: str, *args: str, script: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", netns, "nft", *args],
        input=script,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"st-egress-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)


def a_policy(*published: PublishedPort) -> EgressPolicy:
    return EgressPolicy(
        bridge="games0",
        allow=(
            EgressAllowance.parse("10.20.0.0/16"),
            EgressAllowance.parse("10.30.0.5 tcp/5432-5440"),
            EgressAllowance.parse("fd12:3456::/48 udp/27015"),
        ),
        dns_servers=(ipaddress.ip_address("10.255.255.53"), ipaddress.ip_address("fd00::53")),
        published=frozenset(published),
    )


def listed(netns: str, table: str) -> dict[str, Any]:
    """The table as ``nft -j list table``: set name -> elements, chain name -> rule count."""
    result = nft_in(netns, "-j", "list", "table", "inet", table)
    assert result.returncode == 0, result.stderr
    found: dict[str, Any] = {}
    for item in json.loads(result.stdout)["nftables"]:
        if "set" in item:
            found[f"set {item['set']['name']}"] = item["set"].get("elem", [])
        elif "rule" in item:
            chain = f"chain {item['rule']['chain']}"
            found[chain] = found.get(chain, 0) + 1
    return found


def test_the_ruleset_loads_and_loading_it_again_replaces_it(netns: str) -> None:
    first = a_policy(
        PublishedPort("tcp", 25565, ipaddress.ip_address("172.18.0.1")),
        PublishedPort("udp", 27015, ipaddress.ip_address("fd00:1::1")),
        PublishedPort("tcp", 7777),
    )
    loaded = nft_in(netns, "-f", "-", script=render_ruleset(first))
    assert loaded.returncode == 0, loaded.stderr
    table = listed(netns, "stellar_egress_games0")
    assert table["set published_any"]
    assert table["set published_v4"]
    assert table["set published_v6"]
    assert table["chain forward"] == table["chain input"] == 1

    second = a_policy(PublishedPort("tcp", 25570, ipaddress.ip_address("172.18.0.1")))
    for _ in range(2):  # idempotent
        loaded = nft_in(netns, "-f", "-", script=render_ruleset(second))
        assert loaded.returncode == 0, loaded.stderr
    table = listed(netns, "stellar_egress_games0")
    assert table["set published_any"] == []
    assert table["set published_v6"] == []
    assert len(table["set published_v4"]) == 1
    assert table == listed(netns, "stellar_egress_games0")


def test_a_script_that_fails_half_way_leaves_the_old_table_whole(netns: str) -> None:
    policy = a_policy(PublishedPort("tcp", 25565))
    assert nft_in(netns, "-f", "-", script=render_ruleset(policy)).returncode == 0
    before = listed(netns, "stellar_egress_games0")

    broken = render_ruleset(a_policy()) + "add rule inet stellar_egress_games0 input bogus\n"
    assert nft_in(netns, "-f", "-", script=broken).returncode != 0
    assert listed(netns, "stellar_egress_games0") == before


def test_removal_takes_the_table_away_and_is_fine_when_it_is_gone(netns: str) -> None:
    assert nft_in(netns, "-f", "-", script=render_ruleset(a_policy())).returncode == 0
    other = nft_in(netns, "-f", "-", script="table inet someone_elses {\n}\n")
    assert other.returncode == 0
    for _ in range(2):
        removed = nft_in(netns, "-f", "-", script=render_removal("games0"))
        assert removed.returncode == 0, removed.stderr
    tables = nft_in(netns, "list", "tables").stdout
    assert "stellar_egress_games0" not in tables
    assert "someone_elses" in tables


@pytest.fixture
def own_bridge() -> Iterator[str]:
    """A bridge name nobody else uses; its table is removed from the host at teardown."""
    bridge = f"stegt-{secrets.token_hex(3)}"
    try:
        yield bridge
    finally:
        subprocess.run(
            ["nft", "delete", "table", "inet", table_name(bridge)], capture_output=True, check=False
        )


async def test_the_agents_loader_applies_and_removes_the_table(own_bridge: str) -> None:
    table = table_name(own_bridge)
    await load_script(render_ruleset(EgressPolicy(bridge=own_bridge)))
    shown = subprocess.run(
        ["nft", "list", "table", "inet", table], capture_output=True, text=True, check=False
    )
    assert shown.returncode == 0
    assert f'iifname "{own_bridge}"' in shown.stdout
    load_script_now(render_removal(own_bridge))
    load_script_now(render_removal(own_bridge))
    shown = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=False)
    assert table not in shown.stdout


async def test_the_loader_reports_nfts_complaint(own_bridge: str) -> None:
    with pytest.raises(EgressError, match=r"`nft -f -` failed \(exit 1\): .*Error: syntax error"):
        await load_script(f"table inet {table_name(own_bridge)} {{\n\tbogus\n}}\n")
    with pytest.raises(EgressError, match="Error: "):
        load_script_now(f"table inet {table_name(own_bridge)} {{\n\tbogus\n}}\n")


async def test_a_missing_nft_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nft, "NFT_COMMAND", ("nft-is-not-here", "-f", "-"))
    with pytest.raises(EgressError, match="nft is not installed"):
        await load_script("")
    with pytest.raises(EgressError, match="nft is not installed"):
        load_script_now("")


def test_uninstall_removes_the_table_of_the_bridge_in_the_config(
    own_bridge: str, tmp_path: Path
) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(f'node_id = "x"\ndocker_network = "{own_bridge}"\n', encoding="utf-8")
    load_script_now(render_ruleset(EgressPolicy(bridge=own_bridge)))

    assert remove_egress_table(config) == f"inet {table_name(own_bridge)}"
    shown = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=False)
    assert table_name(own_bridge) not in shown.stdout

    config.write_text('docker_network = "x; flush ruleset"\n', encoding="utf-8")
    with pytest.raises(InstallError, match="not a Linux bridge name"):
        remove_egress_table(config)
