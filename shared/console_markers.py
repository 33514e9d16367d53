"""Done markers: the console lines that tell a game is up (``ServerSpec.startup_done``).

A marker is found in a line when the line contains it; one written ``regex:<expression>``
when the expression is found anywhere in the line. Expressions are RE2 (Go's regexp syntax,
the one Wings uses for eggs' ``done`` markers, so an egg's marker means the same here), and
RE2 matches in time linear in the line: the game writes the lines, so a marker must never
let it stall the agent with a line made to backtrack (``(a+)+$`` against ``aaaa…b``).
Look-arounds and back-references do not exist in RE2; such a marker is refused when the
spec is validated, with RE2's reason, and so is one whose compiled program is larger than
:data:`MAX_PROGRAM_SIZE` (``[^x]{1000}y``: linear, but a thousand steps per character).
Expressions are compiled without capture groups: only whether a line matches is needed,
and finding groups is what makes RE2 slow on long lines.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

import re2

REGEX_PREFIX: Final = "regex:"
# RE2's memory budget per expression (its default is 8 MiB): a marker is one short line.
REGEX_MAX_MEM: Final = 2 * 1024 * 1024
# Instructions in a compiled expression; the Minecraft done line's expression has 48.
MAX_PROGRAM_SIZE: Final = 1000


class MarkerError(ValueError):
    """A marker that cannot be used (an expression RE2 does not accept)."""


def _options() -> Any:
    options = re2.Options()
    options.max_mem = REGEX_MAX_MEM
    # Report the error to the caller, not on the agent's stderr.
    options.log_errors = False
    options.never_capture = True
    return options


def _compile(expression: str) -> Any:
    if not expression:
        raise MarkerError("a 'regex:' marker needs an expression after the prefix")
    try:
        compiled = re2.compile(expression, _options())
    except re2.error as err:
        reason = err.args[0] if err.args else err
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise MarkerError(f"{expression!r} is not a valid RE2 expression: {reason}") from err
    size = int(compiled.programsize)
    if size > MAX_PROGRAM_SIZE:
        raise MarkerError(
            f"{expression!r} is too complex to search every console line for "
            f"(RE2 program of {size} instructions, at most {MAX_PROGRAM_SIZE})"
        )
    return compiled


def check_marker(marker: str) -> str:
    """``marker`` unchanged, or :class:`MarkerError` if its expression does not compile."""
    if marker.startswith(REGEX_PREFIX):
        _compile(marker.removeprefix(REGEX_PREFIX))
    return marker


@dataclass(frozen=True)
class DoneMarkers:
    """A spec's markers, compiled once: which of them, if any, a console line shows."""

    texts: tuple[str, ...]
    # (marker as written, compiled RE2 expression)
    expressions: tuple[tuple[str, Any], ...]

    def __bool__(self) -> bool:
        return bool(self.texts or self.expressions)

    def find(self, line: str) -> str | None:
        """The first marker (as written) that ``line`` shows, or None."""
        return self.find_text(line) or self.find_expression(line)

    def find_text(self, line: str) -> str | None:
        """The first plain-text marker ``line`` contains, or None."""
        for text in self.texts:
            if text in line:
                return text
        return None

    def find_expression(self, line: str) -> str | None:
        """The first ``regex:`` marker found in ``line``, or None."""
        if not self.expressions:
            return None
        # RE2 reads UTF-8; a lone surrogate (never from dockerd, whose log driver turns
        # bytes that are not UTF-8 into U+FFFD) becomes "?" rather than an error.
        encoded = line.encode("utf-8", "replace")
        for marker, expression in self.expressions:
            if expression.search(encoded) is not None:
                return marker
        return None


@lru_cache(maxsize=256)
def _compiled(markers: tuple[str, ...]) -> DoneMarkers:
    texts = tuple(m for m in markers if not m.startswith(REGEX_PREFIX))
    expressions = tuple(
        (m, _compile(m.removeprefix(REGEX_PREFIX))) for m in markers if m.startswith(REGEX_PREFIX)
    )
    return DoneMarkers(texts, expressions)


def compile_markers(markers: Sequence[str]) -> DoneMarkers:
    """The markers compiled (cached: a server compiles its markers once, not at each start)."""
    return _compiled(tuple(markers))
