"""One replacement rule, ready to apply: its key path, its filled value, its condition.

Without ``if_value`` the key is set (and created where the format can). With ``if_value``
the key must exist: it is set when its current value equals ``if_value``, or, written
``regex:<expression>``, when the expression matches it; then every match is replaced by the
value, whose ``$1``... read the match's groups (Go's ``ReplaceAllString``, as in Wings). A
missing key is never created by a conditional rule.

Expressions run in the ``regex`` module with a time limit: a blueprint's expression meets
the game's text, and a pathological pair must cost a rule, not the start. A rule whose
expression ran out of time once is not tried again in that file (a file of matching lines
would cost the limit per line), and all the expressions of one start share
:data:`REGEX_BUDGET_SECONDS` (:class:`RegexBudget`): the start holds the server's lock.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, TypeVar

import regex

from node_agent.configs.placeholders import PlaceholderValues, Template
from shared.patterns import PatternError, compile_guarded
from shared.server_spec import ConfigReplacement

REGEX_PREFIX: Final = "regex:"
REGEX_TIMEOUT_SECONDS: Final = 0.25
# All the regex conditions of one start, over all its files.
REGEX_BUDGET_SECONDS: Final = 1.0
_T = TypeVar("_T")


class RuleProblem(Exception):
    """A rule that cannot be applied (reported on the console; the other rules go on)."""


@dataclass
class Problems:
    """What went wrong with one file's rules, for its console notice."""

    items: list[str] = field(default_factory=list)

    def add(self, text: str) -> None:
        if text not in self.items:
            self.items.append(text)


@dataclass
class RegexBudget:
    """The time left to one start's regex conditions, all files together."""

    seconds: float = REGEX_BUDGET_SECONDS


@dataclass(eq=False)  # one per rule, compared by identity: a Rule stays hashable
class _Expression:
    """A rule's compiled expression, the start's budget, and whether it ran out of time."""

    pattern: regex.Pattern[str]
    budget: RegexBudget
    problem: str | None = None  # set when it ran out of time: it is not tried again

    def run(self, match: str, current: str, template: Template) -> str | None:
        """``current`` with every match replaced, or None if the expression is not found."""
        if self.problem is not None:
            raise RuleProblem(self.problem)
        try:
            if self._timed(lambda timeout: self.pattern.search(current, timeout=timeout)) is None:
                return None
            return self._timed(
                lambda timeout: self.pattern.sub(template.expand, current, timeout=timeout)
            )
        except TimeoutError as err:
            if self.budget.seconds <= 0:
                self.problem = (
                    f"{match}: the {REGEX_BUDGET_SECONDS:g} s this start gives regex conditions"
                    " ran out; not applied"
                )
            else:
                self.problem = f"{match}: the regex took too long; not applied"
            raise RuleProblem(self.problem) from err

    def _timed(self, call: Callable[[float], _T]) -> _T:
        if self.budget.seconds <= 0:
            raise TimeoutError
        started = time.monotonic()
        try:
            return call(min(REGEX_TIMEOUT_SECONDS, self.budget.seconds))
        finally:
            self.budget.seconds -= time.monotonic() - started


@dataclass(frozen=True)
class Rule:
    """A :class:`ConfigReplacement` with its placeholders filled and its expression compiled."""

    match: str
    template: Template
    equals: str | None = None
    expression: _Expression | None = None

    @property
    def pattern(self) -> regex.Pattern[str] | None:
        """The compiled ``regex:`` condition, if the rule has one."""
        return self.expression.pattern if self.expression is not None else None

    @classmethod
    def build(
        cls,
        replacement: ConfigReplacement,
        values: PlaceholderValues,
        budget: RegexBudget | None = None,
    ) -> Rule:
        """The rule for ``replacement``; raises :class:`RuleProblem` for a bad expression.

        ``budget``: the start's time for regex conditions (a fresh one if not given)."""
        condition = replacement.if_value
        if condition is not None and condition.startswith(REGEX_PREFIX):
            expression = condition.removeprefix(REGEX_PREFIX)
            try:
                # Weighed before compiling: a nested counted repeat would expand to gigabytes.
                pattern = compile_guarded(expression)
            except PatternError as err:
                raise RuleProblem(f"{replacement.match}: bad regex:{expression!r} ({err})") from err
            template = Template.fill(replacement.value, values, groups=True)
            expression_state = _Expression(pattern, budget or RegexBudget())
            return cls(replacement.match, template, expression=expression_state)
        return cls(replacement.match, Template.fill(replacement.value, values), equals=condition)

    @property
    def dropped(self) -> bool:
        """Whether the rule's expression ran out of time: it is not tried again."""
        return self.expression is not None and self.expression.problem is not None

    @property
    def creates(self) -> bool:
        """Whether a missing key is created (only by a rule without a condition)."""
        return self.equals is None and self.pattern is None

    def new_text(self, current: str | None) -> str | None:
        """What to write where the key holds ``current`` (None: missing), or None to leave it."""
        if self.expression is not None:
            if current is None:
                return None
            return self.expression.run(self.match, current, self.template)
        if self.equals is not None:
            return self.template.plain() if current == self.equals else None
        return self.template.plain()


def attempt(rule: Rule, current: str | None, problems: Problems) -> str | None:
    """:meth:`Rule.new_text`, with a problem recorded (and nothing set) if it has one."""
    if rule.dropped:
        return None  # its problem is recorded: a file of matching lines costs nothing more
    try:
        return rule.new_text(current)
    except RuleProblem as err:
        problems.add(str(err))
        return None
