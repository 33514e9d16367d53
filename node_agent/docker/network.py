"""The agent's own bridge network: game containers reach the internet, never each other.

Docker's default ``bridge`` lets containers talk freely. The agent puts its containers on
:data:`AGENT_NETWORK` instead, created with inter-container communication disabled; one
customer's game reaches another's only through published ports, like anyone on the internet.
:func:`published_ports` lists those ports, for the egress policy (``node_agent/egress/``).
"""

from __future__ import annotations

import asyncio
import ipaddress
from dataclasses import dataclass
from typing import Any, Final, Literal

import aiodocker
import aiohttp
import structlog

from node_agent.docker.errors import DockerUnavailable, NetworkUnsafe
from node_agent.docker.hardening import MANAGED_LABEL

AGENT_NETWORK: Final = "stellar0"
# The network's name is also its Linux bridge's: IFNAMSIZ allows 15 characters.
BRIDGE_NAME_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$"
ICC_OPTION: Final = "com.docker.network.bridge.enable_icc"
log = structlog.get_logger("agent.docker")


@dataclass(frozen=True)
class PublishedPort:
    """A port dockerd listens on for a running container: on ``address``, or on every one."""

    protocol: Literal["tcp", "udp"]
    port: int
    address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None


@dataclass(frozen=True)
class AgentNetwork:
    """The bridge network the agent's containers join."""

    name: str
    id: str
    # The bridge's IPv4 address on the host (config files' ``{{config.docker.interface}}``).
    gateway: str | None = None


def _network_config(name: str) -> dict[str, Any]:
    return {
        "Name": name,
        "Driver": "bridge",
        "CheckDuplicate": True,
        "Internal": False,
        "Attachable": False,
        "Options": {ICC_OPTION: "false", "com.docker.network.bridge.name": name},
        "Labels": {MANAGED_LABEL: "true"},
    }


def _checked(info: dict[str, Any], name: str) -> AgentNetwork:
    options = info.get("Options") or {}
    if info.get("Driver") != "bridge" or options.get(ICC_OPTION) != "false":
        raise NetworkUnsafe(
            f"network {name!r} exists but is not a bridge with inter-container traffic "
            "disabled; remove it so that the agent can create it"
        )
    return AgentNetwork(name=name, id=str(info["Id"]), gateway=_gateway(info))


def _gateway(info: dict[str, Any]) -> str | None:
    """The network's IPv4 gateway, as dockerd's IPAM configured it."""
    for config in (info.get("IPAM") or {}).get("Config") or []:
        try:
            address = ipaddress.ip_address(str(config.get("Gateway") or "").split("/")[0])
        except ValueError:
            continue
        if address.version == 4:
            return str(address)
    return None


async def _inspect(docker: aiodocker.Docker, name: str) -> dict[str, Any] | None:
    try:
        network = await docker.networks.get(name)
        info: dict[str, Any] = await network.show()
    except aiodocker.DockerError as err:
        if err.status == 404:
            return None
        raise DockerUnavailable(f"cannot inspect network {name!r}: {err.message}") from err
    except (aiohttp.ClientError, OSError) as err:
        raise DockerUnavailable("Docker engine not reachable") from err
    return info


async def ensure_agent_network(docker: aiodocker.Docker, name: str = AGENT_NETWORK) -> AgentNetwork:
    """Return the agent's network, creating it if missing; refuse one that is not isolating."""
    for _attempt in range(3):
        info = await _inspect(docker, name)
        if info is not None:
            return _checked(info, name)
        try:
            await docker.networks.create(_network_config(name))
        except aiodocker.DockerError as err:
            # 409: another agent (or a test) created it a moment ago; inspect again.
            if err.status != 409:
                raise DockerUnavailable(f"cannot create network {name!r}: {err.message}") from err
            await asyncio.sleep(0.1)
            continue
        except (aiohttp.ClientError, OSError) as err:
            raise DockerUnavailable("Docker engine not reachable") from err
        log.info("created agent network", network=name)
    info = await _inspect(docker, name)
    if info is None:
        raise DockerUnavailable(f"network {name!r} could not be created")
    return _checked(info, name)


def published_port(entry: dict[str, Any]) -> PublishedPort | None:
    """One entry of a listed container's ``Ports``, if it is published on the host."""
    protocol, port = entry.get("Type"), entry.get("PublicPort")
    if protocol not in ("tcp", "udp") or not isinstance(port, int):
        return None  # exposed but not published
    try:
        address = ipaddress.ip_address(str(entry.get("IP") or "0.0.0.0"))  # noqa: S104
    except ValueError:
        return None
    return PublishedPort(protocol, port, None if address.is_unspecified else address)


async def published_ports(docker: aiodocker.Docker, name: str) -> frozenset[PublishedPort]:
    """The host ports published by the running managed containers on network ``name``."""
    filters = {"label": [f"{MANAGED_LABEL}=true"], "network": [name]}
    try:
        containers = await docker.containers.list(filters=filters)
    except aiodocker.DockerError as err:
        raise DockerUnavailable(f"cannot list the containers on {name!r}: {err.message}") from err
    except (aiohttp.ClientError, OSError) as err:
        raise DockerUnavailable("Docker engine not reachable") from err
    ports = (
        published_port(entry) for container in containers for entry in container["Ports"] or []
    )
    return frozenset(port for port in ports if port is not None)
