"""Rendering the node firewall: the policy's rules appear, and unsafe policies are refused."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from node_agent.__main__ import main as agent_main
from node_agent.firewall import (
    FirewallError,
    FirewallPolicy,
    PortRange,
    render,
    render_firewall,
)
from tests.conftest import require_tool


def policy(*addresses: str, agent_port: int = 8443, games: str = "25565-25665") -> FirewallPolicy:
    return FirewallPolicy(
        control_plane=FirewallPolicy.parse_addresses(list(addresses) or ["198.18.0.1"]),
        agent_port=agent_port,
        game_ports=PortRange.parse(games),
    )


def test_nft_ruleset_drops_by_default_and_opens_the_agent_to_the_control_plane_only() -> None:
    rules = render_firewall(policy("198.18.0.1", "2001:db8::/64"))

    assert "policy drop;" in rules
    assert "elements = { 198.18.0.1 }" in rules
    assert "elements = { 2001:db8::/64 }" in rules
    assert "ip saddr @control_plane_v4 tcp dport 8443 accept" in rules
    assert "ip6 saddr @control_plane_v6 tcp dport 8443 accept" in rules
    # The agent port appears in no other accepting rule.
    agent_rules = [line for line in rules.splitlines() if "8443" in line]
    assert all("saddr @control_plane" in line for line in agent_rules)
    assert "tcp dport 25565-25665 accept" in rules
    assert "udp dport 25565-25665 accept" in rules
    assert "tcp dport 22 accept" in rules
    assert "@" not in rules.replace("@control_plane", "")


def test_ufw_commands_say_the_same() -> None:
    commands = render_firewall(policy("198.18.0.1"), "ufw")

    assert "ufw default deny incoming" in commands
    assert "ufw allow from 198.18.0.1 to any port 8443 proto tcp" in commands
    assert "ufw allow 25565:25665/tcp" in commands
    assert "ufw allow 25565:25665/udp" in commands


@pytest.mark.parametrize(("agent_port", "games"), [(25600, "25565-25665"), (8443, "22-100")])
def test_a_game_range_over_the_agent_or_ssh_port_is_refused(agent_port: int, games: str) -> None:
    with pytest.raises(FirewallError, match="would be open to everyone"):
        policy(agent_port=agent_port, games=games)


@pytest.mark.parametrize("address", ["cp.example.com", "300.1.1.1", ""])
def test_control_plane_must_be_addresses(address: str) -> None:
    with pytest.raises(FirewallError):
        FirewallPolicy(
            control_plane=FirewallPolicy.parse_addresses([address]),
            agent_port=8443,
            game_ports=PortRange.parse("25565-25665"),
        )


@pytest.mark.parametrize("text", ["x-y", "10-5", "0-10", "1-2-3", "70000"])
def test_bad_port_ranges_are_refused(text: str) -> None:
    with pytest.raises(FirewallError):
        PortRange.parse(text)


def test_an_unfilled_placeholder_is_refused() -> None:
    with pytest.raises(FirewallError, match="MYSTERY"):
        render("tcp dport @MYSTERY@ accept", {"AGENT_PORT": "1"})


def test_the_cli_prints_the_ruleset(capsys: pytest.CaptureFixture[str]) -> None:
    assert agent_main(["firewall", "--control-plane", "198.18.0.1", "--agent-port", "8443"]) == 0
    assert "table inet stellar_node" in capsys.readouterr().out
    assert agent_main(["firewall", "--control-plane", "nope", "--agent-port", "8443"]) == 2


@pytest.mark.skipif(os.geteuid() != 0, reason="nft --check needs root")
def test_nft_accepts_the_rendered_ruleset(tmp_path: Path) -> None:
    require_tool("nft", "nftables")
    path = tmp_path / "rules.nft"
    path.write_text(render_firewall(policy("198.18.0.1", "2001:db8::1")), encoding="utf-8")
    result = subprocess.run(
        ["nft", "--check", "-f", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_the_sftp_port_is_open_to_everyone_when_given() -> None:
    with_sftp = FirewallPolicy(
        control_plane=FirewallPolicy.parse_addresses(["198.18.0.1"]),
        agent_port=8443,
        game_ports=PortRange.parse("25565-25665"),
        sftp_port=2022,
    )
    rules = render_firewall(with_sftp)
    assert 'tcp dport 2022 accept comment "SFTP: players"' in rules
    assert "ufw allow 2022/tcp comment 'SFTP: players'" in render_firewall(with_sftp, "ufw")
    assert "2022" not in render_firewall(policy())
    with pytest.raises(FirewallError, match="would be open to everyone"):
        FirewallPolicy(
            control_plane=with_sftp.control_plane,
            agent_port=8443,
            game_ports=PortRange.parse("2000-3000"),
            sftp_port=2022,
        )
