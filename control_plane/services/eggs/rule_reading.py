"""One Laravel rule at a time: what :class:`Reading` gathers before the rules are settled
together (control_plane/services/eggs/rules.py).

Laravel's behaviour each rule follows (``Illuminate\\Validation\\Concerns\\
ValidatesAttributes``, 11.x for Pterodactyl, 13.x for Pelican):

- ``int`` and ``bool`` are ``integer`` and ``boolean`` (``ValidationRuleParser::normalizeRule``);
- ``required``, ``nullable``, ``present``, ``bail`` and ``sometimes`` ignore a parameter
  (``nullable:string`` is ``nullable``);
- ``digits:n``, ``digits_between:a,b``, ``min_digits:n``, ``max_digits:n``: only ``0`` to ``9``,
  as many as the parameters say (a text length, also next to ``numeric``);
- ``gt``/``gte``/``lt``/``lte`` with a number take only numeric values, compared by value;
- ``not_in``, ``starts_with``, ``ends_with``: CSV parameters; an empty prefix or suffix never
  matches;
- ``alpha``, ``alpha_num``, ``alpha_dash``: any script's letters (and marks, numbers, ``-``
  ``_``), or ASCII ones with ``:ascii``.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from typing import Final, NamedTuple

from control_plane.services.eggs.rule_patterns import translate_pattern

PATTERN_RULES: Final = ("regex", "not_regex")
KINDS: Final = ("string", "integer", "numeric", "boolean")
_ALIASES: Final = {"int": "integer", "bool": "boolean"}
_NO_EFFECT: Final = ("bail", "sometimes", "present")
_IGNORING_PARAMETERS: Final = ("required", "nullable", *_NO_EFFECT)
_FORMS: Final = ("url", "ip", "ipv4", "ipv6", "lowercase", "uppercase")
_ALPHA: Final = {"alpha": "[A-Za-z]+", "alpha_num": "[A-Za-z0-9]+", "alpha_dash": "[-_A-Za-z0-9]+"}
_DIGITS: Final = {"digits": 1, "digits_between": 2, "min_digits": 1, "max_digits": 1}
_SIZES: Final = {"min": 1, "max": 1, "size": 1, "between": 2}
# rule: (bounds the lower end, leaves the bound itself out)
_COMPARISONS: Final = {
    "gt": (True, True),
    "gte": (True, False),
    "lt": (False, True),
    "lte": (False, False),
}
_AFFIXES: Final = ("starts_with", "ends_with")
_UNENFORCEABLE: Final = {
    "array": "a variable's value is text, which Laravel's array refuses",
    "confirmed": "compares with a second field (…_confirmation) a variable does not have",
    "exists": "looks the value up in the panel's database",
    "unique": "looks the value up in the panel's database",
}


def web_schemes(parameter: str) -> bool:
    """``url:http,https`` (Laravel 10's schemes): exactly what ``format: url`` takes."""
    return {s.strip().lower() for s in parameter.split(",")} == {"http", "https"}


def csv_values(parameter: str) -> list[str]:
    """Laravel's ``str_getcsv`` of a rule's parameters."""
    return next(csv.reader([parameter]), [])


def _number(text: str) -> float | None:
    try:
        number = float(text.strip())
    except ValueError:
        return None
    return number if math.isfinite(number) else None


class Bound(NamedTuple):
    """A rule's bounds on a value (or a length); ``*_open``: the bound itself is refused."""

    rule: str
    low: float | None
    high: float | None
    low_open: bool = False
    high_open: bool = False


@dataclass
class Reading:
    """The rules read so far, before the ones that depend on others are settled."""

    kinds: set[str] = field(default_factory=set)
    required: bool = False
    nullable: bool = False
    refuses_null: str | None = None  # the first rule that fails on an empty (null) value
    bounds: list[Bound] = field(default_factory=list)  # min, max, size, between
    comparisons: list[Bound] = field(default_factory=list)  # gt, gte, lt, lte
    lengths: list[Bound] = field(default_factory=list)  # digits…
    options: list[str] | None = None
    not_options: list[str] = field(default_factory=list)
    affixes: dict[str, list[str]] = field(default_factory=dict)
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

    def restrict(self, options: list[str]) -> None:
        if self.options is None:
            self.options = options
        else:
            self.options = [o for o in self.options if o in options]

    def read(self, rule: str) -> None:
        name, colon, parameter = rule.partition(":")
        name = name.strip()
        if name in _ALIASES:
            self.notes.append(f"{name}: Laravel reads it as {_ALIASES[name]}")
            name = _ALIASES[name]
        if colon and name in _IGNORING_PARAMETERS:
            self.notes.append(f"{rule}: Laravel ignores the parameter of {name}")
            colon = ""
        if colon and name in (*KINDS, *_FORMS) and not (name == "url" and web_schemes(parameter)):
            # integer:strict, url:ftp…: variants we do not translate.
            self.refuse(rule, f"only {name} without parameters is translated")
        elif name in ("required", "nullable"):
            setattr(self, name, True)
        elif name in KINDS:
            self.kinds.add(name)
            self.refusing_null(rule)
        elif name == "in":
            self.restrict(csv_values(parameter))
            self.refusing_null(rule)
        elif name == "not_in":
            self._read_not_in(rule, parameter)
        elif name == "regex":
            self._read_regex(rule, parameter)
        elif name in _SIZES:
            self._read_bounds(rule, name, parameter, self.bounds)
        elif name in _DIGITS:
            if self._read_bounds(rule, name, parameter, self.lengths):
                self._read_form(rule, "digits")
        elif name in _COMPARISONS:
            self._read_comparison(rule, name, parameter)
        elif name in _ALPHA:
            self._read_alpha(rule, name, parameter)
        elif name in _FORMS:
            self._read_form(rule, name)
        elif name in _AFFIXES:
            self._read_affix(rule, name, parameter)
        elif name in _NO_EFFECT:
            self.notes.append(f"{name}: no effect here (every variable always has a value)")
        else:
            self.refuse(rule, _UNENFORCEABLE.get(name))

    def _read_form(self, rule: str, form: str) -> None:
        if self.form not in (None, form):
            self.refuse(rule, f"a variable has one format, already {self.form}")
            return
        self.form = form
        self.refusing_null(rule)
        if form == "url":
            self.notes.append("url: http:// and https:// only (Laravel takes other schemes)")

    def _read_alpha(self, rule: str, name: str, parameter: str) -> None:
        if parameter.strip() == "ascii":
            self._set_regex(rule, _ALPHA[name])
            self.notes.append(f"{rule}: ASCII only, as the pattern {_ALPHA[name]}")
            return
        if parameter:
            self.notes.append(f"{rule}: Laravel ignores a parameter other than ascii")
        self._read_form(rule, name)

    def _read_regex(self, rule: str, parameter: str) -> None:
        translated = translate_pattern(parameter)
        if translated.pattern is None:
            self.refuse(rule, translated.problem)
        elif self._set_regex(rule, translated.pattern):
            self.notes.extend(translated.notes)

    def _set_regex(self, rule: str, pattern: str) -> bool:
        if self.regex is not None:
            self.refuse(rule, "a variable has one pattern")
            return False
        self.regex = pattern
        self.refusing_null(rule)
        return True

    def _read_bounds(self, rule: str, name: str, parameter: str, into: list[Bound]) -> bool:
        numbers = [_number(p) for p in csv_values(parameter)]
        wanted = _SIZES.get(name) or _DIGITS[name]
        if len(numbers) != wanted or None in numbers:
            self.refuse(rule, f"{name} takes {wanted} number{'s' * (wanted > 1)}")
            return False
        values = [n for n in numbers if n is not None]
        low, high = {
            "min": (values[0], None),
            "max": (None, values[0]),
            "size": (values[0], values[0]),
            "between": (values[0], values[-1]),
            "digits": (values[0], values[0]),
            "digits_between": (values[0], values[-1]),
            "min_digits": (values[0], None),
            "max_digits": (None, values[0]),
        }[name]
        into.append(Bound(rule, low, high))
        # Laravel measures null as size 0: only a positive lower bound (or size) refuses it.
        # The digits rules refuse null in Laravel 13 (not 11 below one digit): we refuse it.
        if (
            (low is not None and low > 0)
            or (name == "size" and values[0] != 0)
            or into is self.lengths
        ):
            self.refusing_null(rule)
        return True

    def _read_comparison(self, rule: str, name: str, parameter: str) -> None:
        number = _number(parameter)
        if number is None:
            self.refuse(rule, f"{name} with a field name compares with a value a variable lacks")
            return
        lower, open_ = _COMPARISONS[name]
        bound = (
            Bound(rule, number, None, open_) if lower else Bound(rule, None, number, False, open_)
        )
        self.comparisons.append(bound)
        self.refusing_null(rule)  # null is not numeric

    def _read_not_in(self, rule: str, parameter: str) -> None:
        values = csv_values(parameter)
        self.not_options.extend(v for v in values if v not in self.not_options)
        if any(_number(v) is not None for v in values):
            self.notes.append(
                f"{rule}: exact text, as Laravel 13; Laravel 11 (Pterodactyl) also refuses "
                "text of the same number (01 for 1)"
            )

    def _read_affix(self, rule: str, name: str, parameter: str) -> None:
        values = [v for v in csv_values(parameter) if v]  # Laravel skips an empty one
        if not values:
            self.refuse(rule, f"no value passes {name} without a non-empty parameter")
        elif name in self.affixes:
            self.refuse(rule, f"one {name} per variable")
        else:
            self.affixes[name] = values
            self.refusing_null(rule)
