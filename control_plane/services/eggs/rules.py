"""An egg variable's Laravel validation rules as a blueprint variable's fields.

:func:`translate_rules` takes the rules as eggs store them, a string
(``"required|string|max:20"``, Pterodactyl) or a list (``["required", "regex:/a|b/"]``,
Pelican), and gives the :class:`~control_plane.schemas.blueprints.BlueprintVariable` keyword
values they mean, what it changed and why, and the rules it cannot enforce.

Laravel's semantics, which the translation keeps:

- ``min``/``max``/``between``/``size`` bound a number's value when the rules hold
  ``integer`` or ``numeric``, otherwise a string's length;
- the panel turns an empty value into null (``ConvertEmptyStringsToNull``), and without
  ``nullable`` almost every rule refuses null: ``string|max:20`` refuses an empty value as
  ``required`` does. ``nullable`` allows it; ``required`` refuses it even with ``nullable``;
- ``boolean`` takes the text values ``0`` and ``1`` only (not ``true``/``false``);
- ``in:`` values are CSV (``in:"a,b",c``), compared as exact text.

Splitting a string: Laravel (9 and later) keeps a rules string whole when it *starts* with
``regex:``/``not_regex:`` and otherwise cuts it at every ``|``, so ``required|regex:/a|b/``
breaks its pattern in two (Laravel's documentation says to use a list there). We cut at
``|`` outside a ``regex:`` pattern's delimiters, which is what the author meant, and note it
when Laravel would have cut otherwise.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from typing import Final

from control_plane.services.eggs.rule_patterns import delimited_end, is_delimiter
from control_plane.services.eggs.rule_patterns import translate_pattern as _translate_pattern

_PATTERN_RULES: Final = ("regex", "not_regex")
_KINDS: Final = ("string", "integer", "numeric", "boolean")
_BOOLEAN_TEXTS: Final = ["0", "1"]
_PLAIN: Final = ("required", "nullable", *_KINDS, "alpha_dash", "url", "bail", "sometimes")


def _web_schemes(parameter: str) -> bool:
    """``url:http,https`` (Laravel 10's schemes): exactly what ``format: url`` takes."""
    return {s.strip().lower() for s in parameter.split(",")} == {"http", "https"}


@dataclass(frozen=True)
class RuleTranslation:
    """``fields``: BlueprintVariable keyword values (``type``, ``required``, ``min``, ``max``,
    ``options``, ``format``, ``regex``); ``notes``: what was changed and why; ``unknown``:
    the rules as written that we cannot enforce (their reason, if any, is in ``notes``)."""

    fields: dict[str, object]
    notes: list[str]
    unknown: list[str]


def _pattern_rule_end(rules: str, start: int) -> int | None:
    """Where the ``regex:`` rule starting at ``start`` ends (the ``|`` after its flags, or
    the end), or None if it does not read as one delimited pattern."""
    name, colon, _ = rules[start:].partition(":")
    if not colon or name.strip() not in _PATTERN_RULES:
        return None
    opening = start + len(name) + 1
    while opening < len(rules) and rules[opening].isspace():
        opening += 1
    if opening >= len(rules) or not is_delimiter(rules[opening]):
        return None
    end = delimited_end(rules, opening)
    if end is None:
        return None
    while end < len(rules) and rules[end] != "|":
        if not (rules[end].isalpha() or rules[end].isspace()):
            return None
        end += 1
    return end


def split_rules(rules: str) -> list[str]:
    """A rules string cut at each ``|`` that is not inside a ``regex:`` pattern."""
    pieces: list[str] = []
    start = 0
    while start <= len(rules):
        end = _pattern_rule_end(rules, start)
        if end is None:
            bar = rules.find("|", start)
            end = len(rules) if bar < 0 else bar
        pieces.append(rules[start:end])
        start = end + 1
    return pieces


def laravel_split(rules: str) -> list[str]:
    """A rules string as Laravel cuts it (ValidationRuleParser::explodeExplicitRule)."""
    name = rules.partition(":")[0].strip()
    return [rules] if name in _PATTERN_RULES else rules.split("|")


def _number(text: str) -> float | None:
    try:
        number = float(text.strip())
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _whole(number: float) -> int | float:
    return int(number) if number.is_integer() else number


@dataclass
class _Reading:
    """The rules read so far, before the ones that depend on others are settled."""

    kinds: set[str] = field(default_factory=set)
    required: bool = False
    nullable: bool = False
    refuses_null: str | None = None  # the first rule that fails on an empty (null) value
    bounds: list[tuple[str, float | None, float | None]] = field(default_factory=list)
    options: list[str] | None = None
    options_rule: str | None = None
    regex: str | None = None
    form: str | None = None
    notes: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)

    def refuse(self, rule: str, reason: str | None = None) -> None:
        self.unknown.append(rule)
        if reason:
            self.notes.append(f"{rule}: {reason}")

    def refusing_null(self, rule: str) -> None:
        self.refuses_null = self.refuses_null or rule

    def restrict(self, rule: str, options: list[str]) -> None:
        if self.options is None:
            self.options, self.options_rule = options, rule
        else:
            self.options = [o for o in self.options if o in options]

    def read(self, rule: str) -> None:
        name, colon, parameter = rule.partition(":")
        name = name.strip()
        if colon and name in _PLAIN and not (name == "url" and _web_schemes(parameter)):
            # alpha_dash:ascii, integer:strict…: variants we do not translate.
            self.refuse(rule, f"only {name} without parameters is translated")
        elif name in ("required", "nullable"):
            setattr(self, name, True)
        elif name in _KINDS:
            self.kinds.add(name)
            self.refusing_null(rule)
        elif name == "in":
            self.restrict(rule, next(csv.reader([parameter]), []))
            self.refusing_null(rule)
        elif name == "regex":
            self._read_regex(rule, parameter)
        elif name in ("min", "max", "size", "between"):
            self._read_bound(rule, name, parameter)
        elif name in ("alpha_dash", "url"):
            if self.form is not None:
                self.refuse(rule, f"a variable has one format, already {self.form}")
                return
            self.form = name
            self.refusing_null(rule)
            if name == "url":
                self.notes.append("url: http:// and https:// only (Laravel takes other schemes)")
        elif name in ("bail", "sometimes"):
            self.notes.append(f"{name}: no effect here (every variable always has a value)")
        else:
            self.refuse(rule)

    def _read_regex(self, rule: str, parameter: str) -> None:
        if self.regex is not None:
            self.refuse(rule, "a variable has one pattern")
            return
        translated = _translate_pattern(parameter)
        if translated.pattern is None:
            self.refuse(rule, translated.problem)
            return
        self.regex = translated.pattern
        self.notes.extend(translated.notes)
        self.refusing_null(rule)

    def _read_bound(self, rule: str, name: str, parameter: str) -> None:
        numbers = [_number(p) for p in next(csv.reader([parameter]), [])]
        wanted = 2 if name == "between" else 1
        if len(numbers) != wanted or None in numbers:
            self.refuse(rule, f"{name} takes {wanted} number{'s' * (wanted > 1)}")
            return
        values = [n for n in numbers if n is not None]
        low, high = {
            "min": (values[0], None),
            "max": (None, values[0]),
            "size": (values[0], values[0]),
            "between": (values[0], values[-1]),
        }[name]
        self.bounds.append((rule, low, high))
        # Laravel measures null as size 0: only a positive lower bound (or size) refuses it.
        if (low is not None and low > 0) or (name == "size" and values[0] != 0):
            self.refusing_null(rule)


def translate_rules(rules: str | list[str]) -> RuleTranslation:
    """The BlueprintVariable fields that enforce an egg variable's Laravel ``rules``."""
    reading = _Reading()
    if isinstance(rules, str):
        pieces = split_rules(rules)
        laravel = laravel_split(rules)
        if [p.strip() for p in pieces] != [p.strip() for p in laravel]:
            reading.notes.append(
                "split at | outside the regex: pattern (Laravel would have cut the pattern "
                "at its |; write the rules as a list to be read alike everywhere)"
            )
    else:
        pieces = list(rules)
    for piece in pieces:
        if piece.strip():  # Laravel skips empty rules ("required||string")
            reading.read(piece.strip())
    return _settle(reading)


def _settle(reading: _Reading) -> RuleTranslation:
    """The rules that depend on each other, once all are read."""
    notes, kinds = reading.notes, reading.kinds
    kind = (
        "integer"
        if "integer" in kinds
        else "number"
        if "numeric" in kinds
        else "boolean"
        if "boolean" in kinds
        else "string"
    )
    fields: dict[str, object] = {"type": kind}
    if "boolean" in kinds:
        reading.restrict("boolean", _BOOLEAN_TEXTS)
        notes.append("boolean: the values 0 and 1 (Laravel refuses the text true and false)")
    if "numeric" in kinds and kind == "number":
        notes.append("numeric: a decimal number such as -1.5 or 2e3, without spaces")
    _settle_bounds(reading, kind, fields)
    if reading.options is not None:
        if not reading.options:
            notes.append("in: no value passes all of the in: and boolean rules")
        fields["options"] = reading.options
    if reading.form is not None:
        fields["format"] = reading.form
    if reading.regex is not None:
        fields["regex"] = reading.regex
    fields["required"] = _settle_required(reading)
    return RuleTranslation(fields=fields, notes=notes, unknown=reading.unknown)


def _settle_bounds(reading: _Reading, kind: str, fields: dict[str, object]) -> None:
    numeric = kind in ("integer", "number")
    lows = [low for _, low, _ in reading.bounds if low is not None]
    highs = [high for _, _, high in reading.bounds if high is not None]
    for rule, _, _ in reading.bounds:
        measure = "value" if numeric else "length"
        reading.notes.append(f"{rule} on {'a' if kind != 'integer' else 'an'} {kind}: {measure}")
    low = max(lows) if lows else None
    high = min(highs) if highs else None
    if kind != "number":
        # Lengths and whole numbers: the whole numbers within the bounds.
        rounded_low = None if low is None else math.ceil(low)
        rounded_high = None if high is None else math.floor(high)
        if (rounded_low, rounded_high) != (low, high):
            reading.notes.append("bounds rounded inward to whole numbers")
        low, high = rounded_low, rounded_high
    if low is not None and high is not None and low > high:
        for rule, _, _ in reading.bounds:
            reading.unknown.append(rule)
        reading.notes.append("min/max: no value can pass these bounds together")
        return
    if low is not None:
        fields["min"] = _whole(float(low))
    if high is not None:
        fields["max"] = _whole(float(high))


def _settle_required(reading: _Reading) -> bool:
    if reading.required:
        if reading.nullable:
            reading.notes.append("nullable with required: an empty value is still refused")
        return True
    if reading.nullable:
        reading.notes.append("nullable: an empty value is allowed")
        return False
    if reading.refuses_null:
        reading.notes.append(
            f"no nullable: an empty value is refused, as in Laravel where {reading.refuses_null} "
            "fails on it (the panel turns it into null): required"
        )
        return True
    return False
