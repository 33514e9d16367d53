"""The rendered nftables ruleset, loaded for real in a network namespace, does what it says.

Three hosts: the control plane (198.18.0.1), an attacker (198.18.0.2) and the node
(198.18.0.3), each a network namespace; the node's namespace holds the bridge the other two
are plugged into. The node runs the real agent (TLS) and a game listener, behind the ruleset
``stellar-agent firewall`` renders.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pytest

from node_agent.firewall import FirewallPolicy, PortRange, render_firewall
from tests.conftest import require_tool
from tests.integration.deploy.support import REPO_ROOT, TlsAgent, probe, wait_for
from tests.support.agent_process import SigningKey

CONTROL_PLANE: Final = "198.18.0.1"
ATTACKER: Final = "198.18.0.2"
NODE: Final = "198.18.0.3"
AGENT_PORT: Final = 8443
GAME_PORTS: Final = PortRange(25565, 25665)
GAME_PORT: Final = 25600
SFTP_PORT: Final = 2022
DROP_TIMEOUT: Final = "1.5"


def _netns_unavailable() -> str | None:
    """Why this host cannot run the test (not a missing program: those fail the test)."""
    if os.geteuid() != 0:
        return "needs root to create network namespaces and load nftables rules"
    if shutil.which("ip") is None:
        return None  # the fixture below fails or skips with the program's name
    name = f"st-probe-{secrets.token_hex(3)}"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True, check=False)
    if made.returncode != 0:
        return f"network namespaces are not available here: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
    return None


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(bool(reason := _netns_unavailable()), reason=reason or ""),
]


@pytest.fixture(autouse=True)
def _programs() -> None:
    require_tool("ip", "iproute2")
    require_tool("nft", "nftables")


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


@dataclass(frozen=True)
class Hosts:
    cp: str
    attacker: str
    node: str


@pytest.fixture
def hosts() -> Iterator[Hosts]:
    """Three namespaces on one bridge (inside the node's namespace); deleted at teardown."""
    tag = secrets.token_hex(3)
    made = Hosts(f"st-cp-{tag}", f"st-atk-{tag}", f"st-node-{tag}")
    created: list[str] = []
    try:
        for name in (made.cp, made.attacker, made.node):
            ip("netns", "add", name)
            created.append(name)
        ip("-n", made.node, "link", "add", "br0", "type", "bridge")
        ip("-n", made.node, "addr", "add", f"{NODE}/24", "dev", "br0")
        for peer, address, port_name in (
            (made.cp, CONTROL_PLANE, "to-cp"),
            (made.attacker, ATTACKER, "to-atk"),
        ):
            # Created inside the node's namespace, one end moved out: no name in the host's.
            ip(
                "-n",
                made.node,
                "link",
                "add",
                port_name,
                "type",
                "veth",
                "peer",
                "eth0",
                "netns",
                peer,
            )
            ip("-n", made.node, "link", "set", port_name, "master", "br0", "up")
            ip("-n", peer, "addr", "add", f"{address}/24", "dev", "eth0")
            ip("-n", peer, "link", "set", "eth0", "up")
            ip("-n", peer, "link", "set", "lo", "up")
        ip("-n", made.node, "link", "set", "br0", "up")
        ip("-n", made.node, "link", "set", "lo", "up")
        yield made
    finally:
        for name in created:
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


@pytest.fixture
def game_listener(hosts: Hosts) -> Iterator[None]:
    """A TCP listener on a game port inside the node's namespace."""
    process = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            hosts.node,
            sys.executable,
            "-m",
            "http.server",
            str(GAME_PORT),
            "--bind",
            NODE,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=REPO_ROOT / "deploy",
    )
    try:
        wait_for(lambda: probe("connect", NODE, str(GAME_PORT), "1", netns=hosts.node) == "open")
        yield
    finally:
        process.kill()
        process.wait()


@pytest.fixture
def agent(hosts: Hosts, tmp_path: Path) -> Iterator[TlsAgent]:
    process = TlsAgent(
        tmp_path / "agent",
        SigningKey.generate(),
        host=NODE,
        port=AGENT_PORT,
        netns=hosts.node,
        sftp_port=SFTP_PORT,
    )
    try:
        process.start()
        yield process
    finally:
        process.stop()


def load_firewall(hosts: Hosts, tmp_path: Path) -> None:
    policy = FirewallPolicy(
        control_plane=FirewallPolicy.parse_addresses([CONTROL_PLANE]),
        agent_port=AGENT_PORT,
        game_ports=GAME_PORTS,
        sftp_port=SFTP_PORT,
    )
    rules = tmp_path / "stellar-node.nft"
    rules.write_text(render_firewall(policy, "nft"), encoding="utf-8")
    subprocess.run(
        ["ip", "netns", "exec", hosts.node, "nft", "-f", str(rules)],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_only_the_control_plane_reaches_the_agent_and_everyone_reaches_the_games(
    hosts: Hosts, agent: TlsAgent, game_listener: None, tmp_path: Path
) -> None:
    # Without the firewall, the attacker reaches the agent: the test network works.
    assert probe("connect", NODE, str(AGENT_PORT), DROP_TIMEOUT, netns=hosts.attacker) == "open"

    load_firewall(hosts, tmp_path)

    healthz = probe(
        "https-get", f"{agent.url}/healthz", agent.identity.fingerprint, "5", netns=hosts.cp
    )
    assert healthz.startswith("200"), healthz
    # Dropped, not refused: the attacker learns nothing, not even that something is there.
    assert probe("connect", NODE, str(AGENT_PORT), DROP_TIMEOUT, netns=hosts.attacker) == "timeout"
    assert probe("connect", NODE, str(GAME_PORT), DROP_TIMEOUT, netns=hosts.attacker) == "open"
    # Players reach the agent's SFTP listener from anywhere.
    assert probe("connect", NODE, str(SFTP_PORT), DROP_TIMEOUT, netns=hosts.attacker) == "open"
    # A closed port outside every rule is dropped too (default policy), for both peers.
    assert probe("connect", NODE, "9999", DROP_TIMEOUT, netns=hosts.cp) == "timeout"
