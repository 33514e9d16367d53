"""Placeholders in a rule's value, and the value as a template of text and regex groups.

A placeholder reads one value the agent chose to offer about the server; nothing else:

=============================================  =============================================
``{{server.allocations.default.port}}``        the primary allocation's port
(legacy ``{{server.build.default.port}}``)
``{{server.allocations.default.ip}}``          the primary allocation's address
(legacy ``{{server.build.default.ip}}``)
``{{server.build.memory}}``                    the memory limit, in MiB
``{{server.environment.X}}``, ``{{env.X}}``    the game's variable ``X``, as the game sees it
(legacy ``{{server.build.env.X}}``)
``{{config.docker.interface}}``                the address of the games' bridge on the host
=============================================  =============================================

There is deliberately no other ``{{config.*}}``: Wings resolves those against its own
settings, and an egg could read the node's token that way. An unknown placeholder becomes
empty and is reported. Line breaks in a substituted value become spaces, so a variable can
never add a line (a key) to a line-based file.

With a ``regex:`` condition the value may also refer to the match's groups the way Go's
``Regexp.Expand`` does (Wings is Go): ``$1``, ``${1}``, ``$name``, ``${name}``, ``$$``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

import regex

from shared.server_spec import ServerSpec

# {{ name }} with optional spaces (Pelican's eggs write them); names are dotted words.
PLACEHOLDER: Final = re.compile(r"\{\{\s*([A-Za-z0-9_.\-]+)\s*\}\}")
_GROUP_REFERENCE: Final = re.compile(r"\$(?:\$|(\w+)|\{(\w+)\})")
_LINE_BREAK: Final = re.compile(r"[\r\n]+")
_ENV_PREFIXES: Final = ("server.environment.", "server.build.env.", "env.")


@dataclass(frozen=True)
class PlaceholderValues:
    """The values placeholders may read: chosen facts of one server, none of the agent's."""

    port: str | None
    ip: str | None
    memory_mib: str
    environment: Mapping[str, str]
    bridge_address: str | None

    @classmethod
    def of(cls, spec: ServerSpec, bridge_address: str | None) -> PlaceholderValues:
        """The values for ``spec``'s server, with the games' bridge at ``bridge_address``."""
        primary = spec.primary_allocation
        # What the game itself sees in its environment (node_agent/docker/hardening.py).
        environment = dict(spec.environment)
        environment.update(SERVER_UUID=str(spec.uuid), SERVER_MEMORY=str(spec.memory_mib))
        if primary is not None:
            environment.update(SERVER_IP=primary.ip, SERVER_PORT=str(primary.port))
        return cls(
            port=None if primary is None else str(primary.port),
            ip=None if primary is None else primary.ip,
            memory_mib=str(spec.memory_mib),
            environment=environment,
            bridge_address=bridge_address,
        )

    def lookup(self, name: str) -> str | None:
        """The value of placeholder ``name``, or None if there is no such placeholder."""
        if name in {"server.allocations.default.port", "server.build.default.port"}:
            return self.port
        if name in {"server.allocations.default.ip", "server.build.default.ip"}:
            return self.ip
        if name == "server.build.memory":
            return self.memory_mib
        if name == "config.docker.interface":
            return self.bridge_address
        for prefix in _ENV_PREFIXES:
            if name.startswith(prefix):
                return self.environment.get(name.removeprefix(prefix))
        return None


@dataclass(frozen=True)
class Template:
    """A rule's value with its placeholders filled.

    With ``groups`` (a ``regex:`` rule) the blueprint's ``$1``... are filled per match by
    :meth:`expand`; a ``$`` that a substituted value brings stays a literal ``$``.
    """

    text: str
    groups: bool = False
    # Placeholders that had no value (reported on the console).
    unknown: tuple[str, ...] = field(default=())
    # The blueprint's value before filling: what its form is decided on (XML's
    # ``[attr='v']``), never on what a variable brought.
    source: str = ""

    @classmethod
    def fill(cls, value: str, values: PlaceholderValues, *, groups: bool = False) -> Template:
        """``value`` with every placeholder replaced by its value (unknown: empty)."""
        unknown: list[str] = []

        def substitute(found: re.Match[str]) -> str:
            text = values.lookup(found[1])
            if text is None:
                unknown.append(found[0])
                return ""
            text = _LINE_BREAK.sub(" ", text)
            # The game's variable is text, never a group reference.
            return text.replace("$", "$$") if groups else text

        return cls(PLACEHOLDER.sub(substitute, value), groups, tuple(unknown), value)

    def plain(self) -> str:
        """The value of a rule without groups."""
        return self.text

    def expand(self, found: regex.Match[str]) -> str:
        """The value for one match: ``$1``, ``${name}`` read its groups (empty if none)."""
        if not self.groups:
            return self.text

        def group(reference: re.Match[str]) -> str:
            name = reference[1] or reference[2]
            if name is None:
                return "$"
            key: int | str = int(name) if name.isdigit() else name
            try:
                return found.group(key) or ""
            except (IndexError, KeyError):
                return ""

        return _GROUP_REFERENCE.sub(group, self.text)
