"""A server's deny-list: gitignore-style patterns naming paths no file operation may touch.

Supported, as in ``.gitignore``: blank lines and ``#`` comments; ``!`` re-allows; a trailing
``/`` matches directories only; a pattern with a ``/`` before its end is anchored at the
volume root, one without matches a name at any depth; ``*``, ``?``, ``[...]`` within one
component; ``**`` for any number of components. A path is denied when it or any directory
above it is (a denied directory's contents cannot be re-allowed, as in git).

Patterns become RE2 expressions, matched in time linear in the path: a deny-list comes from
a blueprint (an imported egg, say) and the path from any user, and a backtracking engine
took seconds on ``*a*a*a*a*a*a*a*b`` against a 60-character name, with the agent's event
loop stalled.
"""

from __future__ import annotations

import functools
import string
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

import re2

from node_agent.files.paths import VolumePath

_PUNCTUATION: Final = frozenset(string.punctuation)


def _options() -> Any:
    options = re2.Options()
    options.log_errors = False
    options.never_capture = True
    return options


def _literal(char: str) -> str:
    # RE2 takes a backslash before ASCII punctuation only; everything else stands for itself.
    return f"\\{char}" if char in _PUNCTUATION else char


@dataclass(frozen=True, slots=True)
class _Rule:
    regex: Any  # a compiled RE2 expression
    negated: bool
    directory_only: bool


def _character_class(token: str, start: int) -> tuple[str, int]:
    end = token.find("]", start + 2 if token[start + 1 : start + 2] in {"!", "^"} else start + 1)
    if end < 0:
        return _literal("["), start + 1
    body = token[start + 1 : end]
    negate = body[:1] in {"!", "^"}
    body = body[1:] if negate else body
    escaped = body.replace("\\", "\\\\").replace("[", "\\[")
    return f"[{'^' if negate else ''}{escaped}]", end + 1


def _glob(token: str) -> str:
    out: list[str] = []
    index = 0
    while index < len(token):
        char = token[index]
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            piece, index = _character_class(token, index)
            out.append(piece)
            continue
        elif char == "\\" and index + 1 < len(token):
            index += 1
            out.append(_literal(token[index]))
        else:
            out.append(_literal(char))
        index += 1
    return "".join(out)


def compile_pattern(pattern: str) -> _Rule | None:
    """One line of a deny-list as a rule, or None for a blank line or a comment."""
    text = pattern.strip()
    if not text or text.startswith("#"):
        return None
    negated = text.startswith("!")
    if negated or text.startswith("\\!") or text.startswith("\\#"):
        text = text[1:]
    directory_only = text.endswith("/")
    text = text.rstrip("/")
    anchored = "/" in text
    tokens = text.lstrip("/").split("/")
    if not text.lstrip("/"):
        return None
    regex = ""
    for index, segment in enumerate(tokens):
        last = index == len(tokens) - 1
        if segment == "**":
            regex += ".+" if last else "(?:[^/]+/)*"
        else:
            regex += _glob(segment) + ("" if last else "/")
    if not anchored:
        regex = "(?:[^/]+/)*" + regex
    return _Rule(re2.compile(f"(?s:{regex})", _options()), negated, directory_only)


class DenyList:
    """The compiled deny-list of one server."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self._rules = tuple(rule for p in patterns if (rule := compile_pattern(p)) is not None)

    def __bool__(self) -> bool:
        return bool(self._rules)

    def _matches(self, path: str, is_dir: bool) -> bool:
        denied = False
        for rule in self._rules:
            if rule.directory_only and not is_dir:
                continue
            if rule.regex.fullmatch(path):
                denied = not rule.negated
        return denied

    def denies(self, parts: VolumePath, *, is_dir: bool) -> bool:
        """Whether ``parts`` (a directory if ``is_dir``) or a directory above it is denied."""
        for depth in range(1, len(parts) + 1):
            last = depth == len(parts)
            if self._matches("/".join(parts[:depth]), is_dir if last else True):
                return True
        return False


@functools.lru_cache(maxsize=256)
def deny_list(patterns: tuple[str, ...]) -> DenyList:
    """The compiled deny-list for ``patterns`` (servers share compiled lists)."""
    return DenyList(patterns)
