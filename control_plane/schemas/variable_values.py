"""A blueprint variable's rules applied to one value: :func:`value_problem`.

A variable (a :class:`~control_plane.schemas.blueprints.BlueprintVariable` as stored, a
dict) has a ``type`` (``string``, ``integer``, ``number``, ``boolean``), ``required``,
``min``/``max`` (a number's value, a string's length; ``exclusive_min``/``exclusive_max``
leave the bound itself out), ``min_length``/``max_length`` (the length, whatever the type),
``options``, ``not_options``, ``format`` (control_plane/schemas/value_formats.py),
``starts_with``/``ends_with`` and ``regex``. Blueprints stored before a field existed lack
it: every field is read with its default.

Patterns run on the ``regex`` package, not ``re``: a pattern comes from an administrator or
from an imported community egg, the value from any user, and ``re`` cannot be stopped once a
backtracking pattern runs away on the event loop. ``regex`` takes a ``timeout`` (and is
closer to PHP's PCRE, which egg patterns are written for: ``(?<name>…)``, ``\\p{L}``,
``\\h``, ``\\R``, possessive quantifiers).
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping
from typing import Any, Final

import regex

from control_plane.schemas.value_formats import format_problem

MAX_VALUE_LENGTH: Final = 4096
# A fair pattern checks 4096 characters in microseconds; this is a thousand times that.
MATCH_TIMEOUT_SECONDS: Final = 0.05
# All of one request's patterns together (up to 64 variables): the event loop waits no longer.
CHECKS_BUDGET_SECONDS: Final = 0.2
# ASCII digits only: Python's \d also takes other scripts' digits (int() reads "٣" as 3).
_INTEGER: Final = re.compile(r"-?[0-9]{1,18}")
_NUMBER: Final = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]{1,4})?")
_BOOLEANS: Final = frozenset({"true", "false", "0", "1"})
# A pattern opening with inline flags that include "u" ("(?u)", "(?iu)", "(?i)(?u)") is
# matched with Unicode classes.
_UNICODE_FLAG: Final = re.compile(r"(?:\(\?[A-Za-z]*\))*\(\?[A-Za-z]*u[A-Za-z]*\)")
_SHOWN_OPTIONS: Final = 200


@functools.lru_cache(maxsize=512)
def compile_pattern(pattern: str) -> regex.Pattern[str]:
    """``pattern`` compiled as a variable's rule: ASCII ``\\d``, ``\\w``, ``\\s``, ``\\b``
    (as PHP's PCRE without ``/u``) unless it opens with inline flags holding ``u``.

    ValueError (``regex.error`` is one) if it cannot be compiled.
    """
    flags = 0 if _UNICODE_FLAG.match(pattern) else regex.ASCII
    try:
        return regex.compile(pattern, flags)
    except regex.error as err:
        raise ValueError(str(err)) from err


def show_number(number: float) -> str:
    """``5`` for 5 and 5.0, ``0.5`` for 0.5: a bound as a message shows it."""
    return str(int(number)) if float(number).is_integer() else repr(float(number))


def _bounds_problem(variable: Mapping[str, Any], size: float, unit: str) -> str | None:
    low, high = variable.get("min"), variable.get("max")
    above, below = variable.get("exclusive_min"), variable.get("exclusive_max")
    if low is not None and low == high and size != low:
        return f"must be exactly {show_number(low)}{unit}"
    if low is not None and (size <= low if above else size < low):
        return f"must be {'more than' if above else 'at least'} {show_number(low)}{unit}"
    if high is not None and (size >= high if below else size > high):
        return f"must be {'less than' if below else 'at most'} {show_number(high)}{unit}"
    return None


def _length_problem(variable: Mapping[str, Any], value: str) -> str | None:
    low, high = variable.get("min_length"), variable.get("max_length")
    unit = " digits" if variable.get("format") == "digits" else " characters"
    if low is not None and low == high and len(value) != low:
        return f"must be exactly {low}{unit} long"
    if low is not None and len(value) < low:
        return f"must be at least {low}{unit} long"
    if high is not None and len(value) > high:
        return f"must be at most {high}{unit} long"
    return None


def _shown(values: list[str]) -> str:
    shown = ", ".join(values)
    return shown[:_SHOWN_OPTIONS] + "…" if len(shown) > _SHOWN_OPTIONS else shown


def _listed(values: list[str]) -> str:
    return _shown(values) if len(values) == 1 else f"one of: {_shown(values)}"


def _text_problem(variable: Mapping[str, Any], value: str) -> str | None:
    """Excluded values, the format, the length and the start and end of the text."""
    if value in (variable.get("not_options") or ()):
        return f"must not be {value[:64]}"
    if problem := format_problem(variable.get("format"), value):
        return problem
    if problem := _length_problem(variable, value):
        return problem
    starts = variable.get("starts_with")
    if starts and not any(value.startswith(start) for start in starts):
        return f"must start with {_listed(starts)}"
    ends = variable.get("ends_with")
    if ends and not any(value.endswith(end) for end in ends):
        return f"must end with {_listed(ends)}"
    return None


def _type_problem(variable: Mapping[str, Any], value: str) -> str | None:
    kind = variable.get("type", "string")
    if kind == "integer":
        if not _INTEGER.fullmatch(value):
            return "must be a whole number"
        return _bounds_problem(variable, int(value), "")
    if kind == "number":
        if not _NUMBER.fullmatch(value) or not math.isfinite(number := float(value)):
            return "must be a number"
        return _bounds_problem(variable, number, "")
    if kind == "boolean":
        return None if value in _BOOLEANS else "must be true or false"
    return _bounds_problem(variable, len(value), " characters")


def value_problem(
    variable: Mapping[str, Any], value: str, *, timeout: float = MATCH_TIMEOUT_SECONDS
) -> str | None:
    """What is wrong with ``value`` for the blueprint variable ``variable``, or None.

    An empty value is refused only if required; it is not checked further. Otherwise the
    first failing check is the answer: type (and ``min``/``max``), options, excluded values,
    format, length, start and end, pattern (given at most ``timeout`` seconds).
    """
    if len(value) > MAX_VALUE_LENGTH:
        return f"at most {MAX_VALUE_LENGTH} characters"
    if "\x00" in value:
        return "must not contain NUL"
    if value == "":
        return "required" if variable.get("required") else None
    if problem := _type_problem(variable, value):
        return problem
    options = variable.get("options")
    if options is not None and value not in options:
        return f"must be one of: {_shown(options)}"
    if problem := _text_problem(variable, value):
        return problem
    if pattern := variable.get("regex"):
        return _pattern_problem(pattern, value, timeout)
    return None


def _pattern_problem(pattern: str, value: str, timeout: float) -> str | None:
    try:
        compiled = compile_pattern(pattern)
    except ValueError:
        # Saved by an older version that compiled patterns with ``re``.
        return "has a pattern that cannot be used: ask an administrator"
    try:
        matched = compiled.fullmatch(value, timeout=timeout)
    except TimeoutError:
        return "took too long to check against the required pattern"
    return None if matched else "does not match the required pattern"
