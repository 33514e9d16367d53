"""Which registries dockerd may pull a blueprint's image from.

An image reference names its registry (``127.0.0.1:5000/x``, ``10.0.0.5/x``), and a registry
names where dockerd fetches its token (``WWW-Authenticate: Bearer realm="http://…"``). dockerd
follows both from the host's own network, outside the games' egress policy, and puts the
body of a failed answer into the pull's error: an egg author could have the node GET its
loopback services or the cloud metadata address and read the answer. So the agent pulls only
from registries its operator lists (``image_registries``); an image already on the node is
used whatever its name (locally built images are never pulled).
"""

from __future__ import annotations

from typing import Final

# Where community eggs' images live; each one's token realm is its own.
DEFAULT_REGISTRIES: Final = ("docker.io", "ghcr.io", "quay.io", "registry.gitlab.com")
_DOCKER_HUB_ALIASES: Final = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})


def registry_of(image: str) -> str:
    """The registry ``image`` is pulled from, as Docker reads the reference: its first
    component if that holds a ``.`` or a ``:`` or is ``localhost``, else Docker Hub."""
    first, slash, _ = image.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        registry = first.lower()
        return "docker.io" if registry in _DOCKER_HUB_ALIASES else registry
    return "docker.io"


def normalise_registry(name: str) -> str:
    """A configured registry (``host`` or ``host:port``) as :func:`registry_of` spells it.

    ValueError if it is not a host with an optional port.
    """
    registry = name.strip().lower()
    host, _, port = registry.rpartition(":") if ":" in registry else (registry, "", "")
    if not host or "/" in registry or (port and not port.isdigit()):
        raise ValueError(f"{name!r} is not a registry (a host name, optionally with :port)")
    return "docker.io" if registry in _DOCKER_HUB_ALIASES else registry
