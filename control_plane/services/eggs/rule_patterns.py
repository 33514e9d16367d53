"""The PHP (PCRE) pattern of a Laravel ``regex:`` rule as a blueprint variable's ``regex``.

PHP writes a pattern between delimiters with flags after it (``/^[a-z]+$/i``, ``#\\d+#``,
``{…}``); Laravel tests it with ``preg_match``, which finds it anywhere in the value. A
blueprint's ``regex`` has no delimiters, must match the whole value, and runs on the
``regex`` package with ASCII classes unless it opens with ``(?u)``
(control_plane/schemas/variable_values.py). So:

- the flags ``i``, ``m``, ``s``, ``x`` become inline flags, ``u`` becomes ``(?u)`` (PHP's
  ``/u`` also makes ``\\d``, ``\\w`` Unicode); any other flag is refused with a reason;
- a pattern anchored at both ends (``^…$``, ``\\A…\\z``, no top-level ``|``, no ``m``) is
  kept as it is; any other is wrapped as ``(?s:.*?)(?:…)(?s:.*)``, which matches the whole
  value exactly when ``preg_match`` finds the pattern in it;
- a pattern the ``regex`` package cannot compile (PCRE-only syntax such as ``\\k<name>``)
  is refused with the compiler's reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from control_plane.schemas.variable_values import compile_pattern

MAX_PATTERN_LENGTH: Final = 1024  # BlueprintVariable.regex
_BRACKETS: Final = {"(": ")", "[": "]", "{": "}", "<": ">"}
_INLINE_FLAGS: Final = "imsx"


@dataclass(frozen=True)
class PatternTranslation:
    """A PHP pattern as a variable's ``regex`` (``pattern``), or why not (``problem``)."""

    pattern: str | None
    notes: list[str] = field(default_factory=list)
    problem: str | None = None


def delimited_end(text: str, start: int) -> int | None:
    """The index just past the closing delimiter of the pattern whose opening delimiter is
    ``text[start]``, or None if it is never closed (PCRE's rules: a backslash escapes the
    next character; bracket delimiters nest)."""
    opening = text[start]
    closing = _BRACKETS.get(opening, opening)
    depth = 0
    index = start + 1
    while index < len(text):
        char = text[index]
        if char == "\\":
            index += 2
            continue
        if char == closing and depth == 0:
            return index + 1
        if closing != opening:
            depth += (char == opening) - (char == closing)
        index += 1
    return None


def is_delimiter(char: str) -> bool:
    """PHP takes any character but a letter, a digit, a backslash or a space."""
    return not (char.isalnum() or char == "\\" or char.isspace())


def _top_level_alternation(body: str) -> bool:
    depth, index, in_class = 0, 0, False
    while index < len(body):
        char = body[index]
        if char == "\\":
            index += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
            # A "]" first in a class ("[]a]", "[^]a]") is a literal.
            index += 1
            index += body.startswith("^", index)
            index += body.startswith("]", index)
            continue
        elif char in "()":
            depth += 1 if char == "(" else -1
        elif char == "|" and depth == 0:
            return True
        index += 1
    return False


def _ends_with_anchor(body: str) -> bool:
    if body.endswith(("\\z", "\\Z")):
        backslashes = len(body[:-2]) - len(body[:-2].rstrip("\\"))
        return backslashes % 2 == 0
    if body.endswith("$"):
        backslashes = len(body[:-1]) - len(body[:-1].rstrip("\\"))
        return backslashes % 2 == 0
    return False


def _whole_value(body: str, flags: str) -> bool:
    """Does fullmatch of ``body`` mean what preg_match of it means?"""
    return (
        body.startswith(("^", "\\A"))
        and _ends_with_anchor(body)
        and not _top_level_alternation(body)
        and "m" not in flags
        and "x" not in flags
    )


def translate_pattern(parameter: str) -> PatternTranslation:
    """The ``regex:`` rule's parameter (``/…/flags``) as a Python pattern."""
    text = parameter.lstrip()  # PHP skips spaces before the delimiter
    if not text or not is_delimiter(text[0]):
        return PatternTranslation(None, problem="a PHP pattern starts with a delimiter, as /…/")
    end = delimited_end(text, 0)
    if end is None:
        closing = _BRACKETS.get(text[0], text[0])
        return PatternTranslation(None, problem=f"the pattern has no closing {closing}")
    body = text[1 : end - 1]
    flags = "".join(text[end:].split())  # PHP ignores spaces and newlines among flags
    other = sorted(set(flags) - set(_INLINE_FLAGS + "u"))
    if other:
        return PatternTranslation(
            None, problem=f"the PHP flag {', '.join(other)} has no Python equivalent here"
        )
    notes: list[str] = []
    inline = "".join(f for f in _INLINE_FLAGS if f in flags) + ("u" if "u" in flags else "")
    if "u" in flags:
        notes.append("regex /u: \\d, \\w, \\s and \\b take every script, as PHP's /u")
    if _whole_value(body, flags):
        pattern = body
    else:
        # In verbose mode a trailing comment would swallow the closing parenthesis.
        tail = "\n" if "x" in flags else ""
        pattern = f"(?s:.*?)(?:{body}{tail})(?s:.*)"
        notes.append(
            "regex: not anchored at both ends (^…$), so it may match anywhere in the value, "
            "as Laravel's preg_match does"
        )
    if inline:
        pattern = f"(?{inline}){pattern}"
    if len(pattern) > MAX_PATTERN_LENGTH:
        return PatternTranslation(
            None, problem=f"the pattern is longer than {MAX_PATTERN_LENGTH} characters"
        )
    try:
        compile_pattern(pattern)
    except ValueError as err:
        return PatternTranslation(None, problem=f"Python cannot compile the pattern: {err}")
    return PatternTranslation(pattern, notes)
