"""A rule's ``match`` as a path of segments: ``listeners[0].host``, ``servers.*.address``.

Dots separate names; ``[n]`` picks item ``n`` of a list (from 0); ``*`` stands for every
child (of a table or a list); ``["a.b"]`` (or ``['a.b']``) is a name that holds dots. For
XML, ``[n]`` counts from 1 and ``[@attr='v']`` picks the elements with that attribute, as
in XPath and as Wings reads an egg's XML paths (``node_agent/configs/xml.py``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

MAX_SEGMENTS: Final = 64


class KeyPathError(ValueError):
    """The ``match`` of a rule cannot be read as a key path."""


@dataclass(frozen=True)
class Name:
    """A key of a table (or an element's tag, for XML)."""

    text: str


@dataclass(frozen=True)
class Index:
    """One item of a list."""

    number: int


@dataclass(frozen=True)
class Wildcard:
    """Every child."""


@dataclass(frozen=True)
class Attribute:
    """XML only: ``[@name='value']``, the elements whose attribute ``name`` is ``value``."""

    name: str
    value: str


Segment = Name | Index | Wildcard | Attribute
_BRACKET: Final = re.compile(
    r"\[(?:(?P<index>\d{1,9})"
    r"|\"(?P<dq>[^\"]*)\"|'(?P<sq>[^']*)'"
    r"|@(?P<attr>[\w.:-]+)=(?:'(?P<aval>[^']*)'|\"(?P<avaldq>[^\"]*)\"))\]"
)


def parse_key(match: str) -> tuple[Segment, ...]:
    """The segments of ``match``; raises :class:`KeyPathError` for a path that means nothing."""
    segments: list[Segment] = []
    position, name = 0, ""
    pending = False  # a dot was read: a name must follow

    def close_name() -> None:
        nonlocal name
        if name:
            segments.append(Wildcard() if name == "*" else Name(name))
            name = ""

    while position < len(match):
        char = match[position]
        if char == ".":
            if not name and (not segments or pending):
                raise KeyPathError(f"{match}: an empty key between dots")
            close_name()
            pending = True
            position += 1
        elif char == "[":
            found = _BRACKET.match(match, position)
            if found is None:
                raise KeyPathError(f"{match}: a '[' that is not [n], [\"name\"] or [@attr='v']")
            close_name()
            if found["index"] is not None:
                segments.append(Index(int(found["index"])))
            elif found["attr"] is not None:
                value = found["aval"] if found["aval"] is not None else found["avaldq"]
                segments.append(Attribute(found["attr"], value))
            else:
                segments.append(Name(found["dq"] if found["dq"] is not None else found["sq"]))
            pending = False
            position = found.end()
        else:
            name += char
            pending = False
            position += 1
    if pending and not name:
        raise KeyPathError(f"{match}: the key ends with a dot")
    close_name()
    if not segments:
        raise KeyPathError(f"{match}: an empty key")
    if len(segments) > MAX_SEGMENTS:
        raise KeyPathError(f"{match}: more than {MAX_SEGMENTS} segments")
    return tuple(segments)


def is_concrete(segments: tuple[Segment, ...]) -> bool:
    """True when the path names one place (no wildcard), so that it may be created."""
    return not any(isinstance(segment, Wildcard) for segment in segments)
