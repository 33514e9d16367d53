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
- ``in:`` values are CSV (``in:"a,b",c``), compared as exact text;
- the rules eggs use beyond these (``digits_between``, ``alpha_num``, ``int``, ``gt``,
  ``not_in``, ``ends_with`` …) are read one by one in
  control_plane/services/eggs/rule_reading.py, which says what Laravel does with each.

Splitting a string: Laravel (9 and later) keeps a rules string whole when it *starts* with
``regex:``/``not_regex:`` and otherwise cuts it at every ``|``, so ``required|regex:/a|b/``
breaks its pattern in two (Laravel's documentation says to use a list there). We cut at
``|`` outside a ``regex:`` pattern's delimiters, which is what the author meant, and note it
when Laravel would have cut otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

from control_plane.services.eggs.rule_patterns import delimited_end, is_delimiter
from control_plane.services.eggs.rule_reading import PATTERN_RULES, Bound, Reading

_BOOLEAN_TEXTS: Final = ["0", "1"]


@dataclass(frozen=True)
class RuleTranslation:
    """``fields``: BlueprintVariable keyword values (``type``, ``required``, ``min``, ``max``,
    ``exclusive_min``, ``exclusive_max``, ``min_length``, ``max_length``, ``options``,
    ``not_options``, ``format``, ``starts_with``, ``ends_with``, ``regex``); ``notes``: what
    was changed and why; ``unknown``:
    the rules as written that we cannot enforce (their reason, if any, is in ``notes``)."""

    fields: dict[str, object]
    notes: list[str]
    unknown: list[str]


def _pattern_rule_end(rules: str, start: int) -> int | None:
    """Where the ``regex:`` rule starting at ``start`` ends (the ``|`` after its flags, or
    the end), or None if it does not read as one delimited pattern."""
    name, colon, _ = rules[start:].partition(":")
    if not colon or name.strip() not in PATTERN_RULES:
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
    return [rules] if name in PATTERN_RULES else rules.split("|")


def _whole(number: float) -> int | float:
    return int(number) if number.is_integer() else number


def translate_rules(rules: str | list[str]) -> RuleTranslation:
    """The BlueprintVariable fields that enforce an egg variable's Laravel ``rules``."""
    reading = Reading()
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


def _kind(reading: Reading) -> str:
    kinds = reading.kinds
    if "integer" in kinds:
        return "integer"
    if "numeric" in kinds:
        return "number"
    if reading.comparisons:
        reading.notes.append(
            f"{reading.comparisons[0].rule}: Laravel's comparison with a number takes only "
            "numeric values: type number"
        )
        return "number"
    return "boolean" if "boolean" in kinds else "string"


def _settle(reading: Reading) -> RuleTranslation:
    """The rules that depend on each other, once all are read."""
    notes, kinds = reading.notes, reading.kinds
    kind = _kind(reading)
    fields: dict[str, object] = {"type": kind}
    if "boolean" in kinds:
        reading.restrict(_BOOLEAN_TEXTS)
        notes.append("boolean: the values 0 and 1 (Laravel refuses the text true and false)")
    if "numeric" in kinds and kind == "number":
        notes.append("numeric: a decimal number such as -1.5 or 2e3, without spaces")
    _settle_bounds(reading, kind, fields)
    _settle_lengths(reading, fields)
    if reading.options is not None:
        if not reading.options:
            notes.append("in: no value passes all of the in: and boolean rules")
        fields["options"] = reading.options
    if reading.not_options:
        fields["not_options"] = reading.not_options
    if reading.form is not None:
        fields["format"] = reading.form
    fields.update(reading.affixes)
    if reading.regex is not None:
        fields["regex"] = reading.regex
    fields["required"] = _settle_required(reading)
    return RuleTranslation(fields=fields, notes=notes, unknown=reading.unknown)


def _inward(bound: Bound) -> Bound:
    """A bound on a whole number: the whole numbers it lets through, the ends included."""
    low, high = bound.low, bound.high
    if low is not None:
        low = math.floor(low) + 1 if bound.low_open else math.ceil(low)
    if high is not None:
        high = math.ceil(high) - 1 if bound.high_open else math.floor(high)
    return Bound(bound.rule, low, high)


def _tightest(bounds: list[Bound]) -> Bound | None:
    """The bounds together (an open end beats a closed one at the same number), or None if
    no value passes them all."""
    lows = [(b.low, b.low_open) for b in bounds if b.low is not None]
    highs = [(b.high, b.high_open) for b in bounds if b.high is not None]
    low, low_open = max(lows) if lows else (None, False)
    high, high_open = min(highs, key=lambda h: (h[0], not h[1])) if highs else (None, False)
    if low is not None and high is not None and (low, low_open or high_open) > (high, False):
        return None  # low > high, or low == high with an end left out
    return Bound("", low, high, low_open, high_open)


def _settle_bounds(reading: Reading, kind: str, fields: dict[str, object]) -> None:
    numeric = kind in ("integer", "number")
    bounds = reading.bounds
    if reading.comparisons and not reading.kinds & {"integer", "numeric"} and bounds:
        # Laravel counts min/max… as a value only if gt… ran first on a numeric value.
        for bound in bounds:
            reading.refuse(
                bound.rule,
                "measured as a length or a value by Laravel depending on the order of the "
                "rules next to a comparison without integer or numeric",
            )
        bounds = []
    for bound in bounds:
        measure = "value" if numeric else "length"
        reading.notes.append(
            f"{bound.rule} on {'a' if kind != 'integer' else 'an'} {kind}: {measure}"
        )
    bounds = bounds + reading.comparisons
    if kind != "number":
        # Lengths and whole numbers: the whole numbers within the bounds.
        rounded = [_inward(b) for b in bounds]
        for before, after in zip(bounds, rounded, strict=True):
            if before.low_open or before.high_open:
                end, value = ("min", after.low) if after.low is not None else ("max", after.high)
                reading.notes.append(f"{before.rule} on an integer: {end} {value}")
            elif (before.low, before.high) != (after.low, after.high):
                rounded_note = "bounds rounded inward to whole numbers"
                if rounded_note not in reading.notes:
                    reading.notes.append(rounded_note)
        bounds = rounded
    together = _tightest(bounds)
    if together is None:
        for bound in bounds:
            reading.unknown.append(bound.rule)
        reading.notes.append("min/max: no value can pass these bounds together")
        return
    if together.low is not None:
        fields["min"] = _whole(float(together.low))
        if together.low_open:
            fields["exclusive_min"] = True
    if together.high is not None:
        fields["max"] = _whole(float(together.high))
        if together.high_open:
            fields["exclusive_max"] = True


def _settle_lengths(reading: Reading, fields: dict[str, object]) -> None:
    lengths = [_inward(b) for b in reading.lengths]
    together = _tightest(lengths)
    if together is None or (together.high is not None and together.high < 1):
        for bound in lengths:
            reading.unknown.append(bound.rule)
        reading.notes.append("digits: no value can have that many digits")
        return
    for bound in reading.lengths:
        reading.notes.append(f"{bound.rule}: only the digits 0-9, counted as a length")
    if together.low is not None and together.low > 0:
        fields["min_length"] = int(together.low)
    if together.high is not None:
        fields["max_length"] = int(together.high)


def _settle_required(reading: Reading) -> bool:
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
