"""JSON with one meaning: UTF-8 without a byte order mark, every member named once, no NaN.

Python's ``json.loads`` given bytes guesses UTF-16 or UTF-32 and skips a leading byte order
mark; it keeps the last of two members with the same name, as pydantic does, while other
readers keep the first; it reads ``NaN`` and ``Infinity``, which are not JSON. A signed
command token or request body read that way could mean one thing to the agent and another
to whatever checked it, so the agent reads both with :func:`loads`.
"""

from __future__ import annotations

import codecs
import json
from typing import Any


class NotStrictJson(ValueError):
    """The bytes are not strict JSON; ``reason`` says why in a few words (safe to log)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value = dict(pairs)
    if len(value) != len(pairs):
        raise NotStrictJson("duplicate member")
    return value


def _not_a_number(constant: str) -> Any:
    raise NotStrictJson("not JSON")


def loads(raw: bytes) -> Any:
    """The JSON value in ``raw``; raises :class:`NotStrictJson` for anything but strict JSON."""
    if raw.startswith(codecs.BOM_UTF8):
        raise NotStrictJson("byte order mark")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise NotStrictJson("not UTF-8") from err
    try:
        return json.loads(text, object_pairs_hook=_unique_members, parse_constant=_not_a_number)
    except NotStrictJson:
        raise
    except (ValueError, RecursionError) as err:
        raise NotStrictJson("not JSON") from err
