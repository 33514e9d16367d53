"""Patterns for the ``regex`` package, refused before compiling when they would blow up.

The ``regex`` package expands counted repeats when it compiles: ``(?:(?:x{65535}){65535})``
grows to tens of gigabytes before a single character is matched, and compiling holds the
process. A pattern comes from an administrator or an imported community egg, so it is
weighed first, by :func:`repeat_problem`, and compiled only if it is light enough
(:func:`compile_guarded`). Variable patterns (control_plane/schemas/variable_values.py) and
config-file ``regex:`` conditions (node_agent/configs/rules.py, and
``ConfigReplacement.if_value`` when a spec is validated) all go through it. Done markers are
RE2 (shared/console_markers.py), which refuses a repeat over 1000, nested or not, itself.

The weight of a pattern is what the compiler expands: each character, class or escape counts
1, multiplied by the bound of every counted repeat (``{n}``, ``{n,m}``, ``{n,}``, ``{,m}``)
around it, summed over the whole pattern. ``*``, ``+`` and ``?`` are loops, never expanded.
"""

from __future__ import annotations

import functools
import re
from typing import Final

import regex

# A config rule's if_value written "regex:<expression>" is an expression.
CONDITION_PREFIX: Final = "regex:"
# A single bound above this is refused: no game's value needs a thousand-fold repeat.
MAX_REPEAT: Final = 1000
# Expanded size of the whole pattern (counted a little high: a group's "?:" or name counts
# too): about 0.05 s and 30 MiB to compile at this weight.
MAX_WEIGHT: Final = 100_000
# {n}, {n,}, {n,m}, {,m} (the regex package also reads {,m}); any other "{" is a literal.
_COUNTED: Final = re.compile(r"\{([0-9]*)(,?)([0-9]*)\}")
# Escapes whose argument is written in braces: \p{L}, \x{41}, \N{name}, \g{1} ...
_BRACED_ESCAPES: Final = frozenset("pPxuUNgk")


class PatternError(ValueError):
    """A pattern that cannot be used: too heavy, or not a pattern the compiler reads."""


class PatternTooHeavy(PatternError):
    """A pattern refused before compiling: its counted repeats expand too far."""


def _class_end(pattern: str, start: int) -> int:
    """The index just past the character class opening at ``pattern[start]`` (``[``)."""
    index = start + 1
    index += pattern.startswith("^", index)
    index += pattern.startswith("]", index)  # "[]a]": a "]" first is a literal
    depth = 1
    while index < len(pattern) and depth:
        char = pattern[index]
        if char == "\\":
            index += 2
            continue
        if char == "[":
            depth += 1  # the regex package's nested sets (V1); harmless to count in V0
        elif char == "]":
            depth -= 1
        index += 1
    return index


def _escape_end(pattern: str, start: int) -> int:
    """The index just past the escape starting at ``pattern[start]`` (``\\``)."""
    index = start + 2
    if pattern[start + 1 : start + 2] in _BRACED_ESCAPES and pattern.startswith("{", index):
        close = pattern.find("}", index)
        return len(pattern) if close < 0 else close + 1
    return index


def repeat_problem(pattern: str) -> str | None:
    """Why ``pattern``'s counted repeats are too heavy to compile, or None."""
    # One frame per open group: the weight of its items so far, and of its last item.
    stack: list[list[int]] = [[0, 0]]
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "(":
            stack.append([0, 0])
            index += 1
            continue
        if char == ")" and len(stack) > 1:
            total, _ = stack.pop()
            stack[-1][0] += total
            stack[-1][1] = total
            index += 1
            continue
        counted = _COUNTED.match(pattern, index) if char == "{" else None
        if counted is not None and (counted[1] or counted[3]):
            low, comma, high = counted.groups()
            bound = max(int(low or 0), int(high or 0)) if comma else int(low)
            if bound > MAX_REPEAT:
                return f"the repeat {counted[0]} is above {MAX_REPEAT}"
            frame = stack[-1]
            frame[0] += frame[1] * (bound - 1)  # the last item, now `bound` times
            frame[1] *= bound
            if frame[0] > MAX_WEIGHT:
                return f"its repeats expand to more than {MAX_WEIGHT} items"
            index = counted.end()
            continue
        if char in "?*+|":
            index += 1  # operators: they expand nothing
            continue
        if char == "[":
            end = _class_end(pattern, index)
        elif char == "\\":
            end = _escape_end(pattern, index)
        else:
            end = index + 1
        stack[-1][0] += 1
        stack[-1][1] = 1
        index = end
    for frame in stack:
        if frame[0] > MAX_WEIGHT:
            return f"its repeats expand to more than {MAX_WEIGHT} items"
    return None


def check_pattern(pattern: str) -> str:
    """``pattern`` unchanged, or :class:`PatternTooHeavy` saying why it is refused."""
    problem = repeat_problem(pattern)
    if problem is not None:
        raise PatternTooHeavy(f"too complex to compile: {problem}")
    return pattern


@functools.lru_cache(maxsize=512)
def compile_guarded(pattern: str, flags: int = 0) -> regex.Pattern[str]:
    """``pattern`` compiled by the ``regex`` package once :func:`check_pattern` passed it.

    :class:`PatternTooHeavy` if it is refused, :class:`PatternError` with the compiler's
    reason if it does not compile.
    """
    check_pattern(pattern)
    try:
        return regex.compile(pattern, flags)
    except regex.error as err:
        raise PatternError(str(err)) from err


def check_condition(condition: str | None) -> str | None:
    """A config rule's ``if_value`` unchanged; one written ``regex:<expression>`` must
    compile (:class:`PatternError` otherwise), so a node never meets a bad one at a start."""
    if condition is not None and condition.startswith(CONDITION_PREFIX):
        expression = condition.removeprefix(CONDITION_PREFIX)
        try:
            compile_guarded(expression)
        except PatternError as err:
            raise PatternError(
                f"{CONDITION_PREFIX}{expression[:80]!r} cannot be used: {err}"
            ) from err
    return condition
