"""``stellar-agent firewall``: render the node's firewall from ``deploy/firewall/``.

The policy (DESIGN.md: "Its port is firewalled so that only the control plane can reach
it"): inbound dropped by default; replies, loopback and ICMP essentials, SSH, the agent port
from the control plane's addresses only, and the node's game port range (TCP and UDP). The
templates carry ``@NAME@`` placeholders; rendering refuses an unknown or unfilled one, and a
game range that would open the agent or SSH port to everyone.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

FirewallFormat = Literal["nft", "ufw"]
TEMPLATES: Final[dict[str, str]] = {"nft": "stellar-node.nft.in", "ufw": "ufw.sh.in"}
_PLACEHOLDER: Final = re.compile(r"@([A-Z][A-Z0-9_]*)@")
DEFAULT_GAME_PORTS: Final = "25565-25665"
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class FirewallError(Exception):
    """The firewall cannot be rendered as asked; the message says why."""


@dataclass(frozen=True)
class PortRange:
    first: int
    last: int

    @classmethod
    def parse(cls, text: str) -> PortRange:
        """``25565-25665`` (or ``25565:25665``, or one port)."""
        parts = re.split(r"[-:]", text.strip())
        try:
            numbers = [int(part) for part in parts]
        except ValueError as err:
            raise FirewallError(f"port range {text!r} is not FIRST-LAST") from err
        if len(numbers) == 1:
            numbers *= 2
        if len(numbers) != 2 or not 1 <= numbers[0] <= numbers[1] <= 65535:
            raise FirewallError(f"port range {text!r} is not FIRST-LAST with 1 <= FIRST <= LAST")
        return cls(numbers[0], numbers[1])

    def __contains__(self, port: object) -> bool:
        return isinstance(port, int) and self.first <= port <= self.last

    def nft(self) -> str:
        return str(self.first) if self.first == self.last else f"{self.first}-{self.last}"

    def ufw(self) -> str:
        return str(self.first) if self.first == self.last else f"{self.first}:{self.last}"


@dataclass(frozen=True)
class FirewallPolicy:
    """What the rendered rules allow in."""

    control_plane: tuple[Network, ...]
    agent_port: int
    game_ports: PortRange
    ssh_port: int = 22
    # The agent's SFTP listener (docs/sftp.md): open to everyone, as players use it.
    sftp_port: int | None = None

    def __post_init__(self) -> None:
        if not self.control_plane:
            raise FirewallError("give at least one control-plane address (--control-plane)")
        if self.sftp_port is not None and self.sftp_port == self.agent_port:
            raise FirewallError("the SFTP port cannot be the agent's API port")
        ports = [("agent", self.agent_port), ("SSH", self.ssh_port)]
        if self.sftp_port is not None:
            ports.append(("SFTP", self.sftp_port))
        for name, port in ports:
            if not 1 <= port <= 65535:
                raise FirewallError(f"the {name} port {port} is not between 1 and 65535")
            if port in self.game_ports:
                raise FirewallError(
                    f"the game port range {self.game_ports.nft()} contains the {name} port "
                    f"{port}: it would be open to everyone"
                )

    @staticmethod
    def parse_addresses(texts: list[str]) -> tuple[Network, ...]:
        """IP addresses or CIDR networks (not host names: the rules hold addresses)."""
        networks = []
        for text in texts:
            for item in filter(None, (part.strip() for part in text.split(","))):
                try:
                    networks.append(ipaddress.ip_network(item, strict=False))
                except ValueError as err:
                    raise FirewallError(
                        f"control-plane address {item!r} is not an IP address or network "
                        "(firewall rules hold addresses, not names)"
                    ) from err
        return tuple(networks)

    def values(self) -> dict[str, str]:
        v4 = [_address(n) for n in self.control_plane if n.version == 4]
        v6 = [_address(n) for n in self.control_plane if n.version == 6]
        ufw = [
            f"ufw allow from {_address(network)} to any port {self.agent_port} proto tcp "
            "comment 'agent API: control plane only'"
            for network in self.control_plane
        ]
        return {
            "CONTROL_PLANE_V4_ELEMENTS": _elements(v4),
            "CONTROL_PLANE_V6_ELEMENTS": _elements(v6),
            "AGENT_PORT": str(self.agent_port),
            "SSH_PORT": str(self.ssh_port),
            "GAME_PORTS": self.game_ports.nft(),
            "GAME_PORTS_UFW": self.game_ports.ufw(),
            "UFW_AGENT_RULES": "\n".join(ufw),
            "SFTP_RULE": ""
            if self.sftp_port is None
            else f'tcp dport {self.sftp_port} accept comment "SFTP: players"',
            "UFW_SFTP_RULE": ""
            if self.sftp_port is None
            else f"ufw allow {self.sftp_port}/tcp comment 'SFTP: players'",
        }


def _address(network: Network) -> str:
    single = network.prefixlen == network.max_prefixlen
    return str(network.network_address) if single else str(network)


def _elements(items: list[str]) -> str:
    # nft refuses "elements = { }": an empty set has no elements line at all.
    return f"\t\telements = {{ {', '.join(items)} }}" if items else ""


def render(template: str, values: dict[str, str]) -> str:
    """Fill ``@NAME@`` placeholders; every one must be known."""
    unknown = sorted(set(_PLACEHOLDER.findall(template)) - values.keys())
    if unknown:
        raise FirewallError(f"the template has placeholders nobody fills: {', '.join(unknown)}")
    return _PLACEHOLDER.sub(lambda match: values[match.group(1)], template)


def default_deploy_dir() -> Path:
    """``$STELLAR_DEPLOY_DIR``, the checkout's ``deploy/``, or the installed copy."""
    override = os.environ.get("STELLAR_DEPLOY_DIR")
    if override:
        return Path(override)
    checkout = Path(__file__).resolve().parent.parent / "deploy"
    if (checkout / "firewall").is_dir():
        return checkout
    return Path("/usr/share/stellar-agent/deploy")


def render_firewall(
    policy: FirewallPolicy, fmt: FirewallFormat = "nft", deploy_dir: Path | None = None
) -> str:
    """The rendered nftables ruleset (``nft -f``) or ufw commands for ``policy``."""
    template_path = (deploy_dir or default_deploy_dir()) / "firewall" / TEMPLATES[fmt]
    try:
        template = template_path.read_text(encoding="utf-8")
    except OSError as err:
        raise FirewallError(f"cannot read the firewall template {template_path}: {err}") from err
    return render(template, policy.values())


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "firewall", help="print the node's firewall rules (nftables, or ufw commands)"
    )
    add_policy_arguments(parser, agent_port_required=True)
    parser.add_argument("--format", choices=sorted(TEMPLATES), default="nft")
    parser.add_argument("--deploy-dir", type=Path, default=None, help=argparse.SUPPRESS)
    parser.set_defaults(handler=_run)


def add_policy_arguments(
    parser: argparse.ArgumentParser,
    *,
    agent_port_required: bool,
    game_ports_default: str | None = DEFAULT_GAME_PORTS,
) -> None:
    parser.add_argument(
        "--control-plane",
        action="append",
        default=[],
        metavar="ADDR",
        help="the control plane's IP address or network (repeat, or comma-separate)",
    )
    parser.add_argument("--agent-port", type=int, required=agent_port_required)
    parser.add_argument("--ssh-port", type=int, default=22)
    parser.add_argument(
        "--sftp-port", type=int, default=None, help="the agent's SFTP port (open to everyone)"
    )
    parser.add_argument(
        "--game-ports",
        default=game_ports_default,
        metavar="FIRST-LAST",
        help=f"the node's game port range (default {DEFAULT_GAME_PORTS})",
    )


def policy_from_args(args: argparse.Namespace, agent_port: int | None = None) -> FirewallPolicy:
    return FirewallPolicy(
        control_plane=FirewallPolicy.parse_addresses(args.control_plane),
        agent_port=agent_port if agent_port is not None else args.agent_port,
        game_ports=PortRange.parse(args.game_ports),
        ssh_port=args.ssh_port,
        sftp_port=args.sftp_port,
    )


def _run(args: argparse.Namespace) -> int:
    try:
        print(render_firewall(policy_from_args(args), args.format, args.deploy_dir), end="")
    except FirewallError as err:
        print(f"stellar-agent firewall: {err}", file=sys.stderr)
        return 2
    return 0
