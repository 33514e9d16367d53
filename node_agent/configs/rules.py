"""One replacement rule, ready to apply: its key path, its filled value, its condition.

Without ``if_value`` the key is set (and created where the format can). With ``if_value``
the key must exist: it is set when its current value equals ``if_value``, or, written
``regex:<expression>``, when the expression matches it; then every match is replaced by the
value, whose ``$1``... read the match's groups (Go's ``ReplaceAllString``, as in Wings). A
missing key is never created by a conditional rule.

Expressions run in the ``regex`` module with a time limit: a blueprint's expression meets
the game's text, and a pathological pair must cost a rule, not the start.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

import regex

from node_agent.configs.placeholders import PlaceholderValues, Template
from shared.server_spec import ConfigReplacement

REGEX_PREFIX: Final = "regex:"
REGEX_TIMEOUT_SECONDS: Final = 0.25


class RuleProblem(Exception):
    """A rule that cannot be applied (reported on the console; the other rules go on)."""


@dataclass
class Problems:
    """What went wrong with one file's rules, for its console notice."""

    items: list[str] = field(default_factory=list)

    def add(self, text: str) -> None:
        if text not in self.items:
            self.items.append(text)


@dataclass(frozen=True)
class Rule:
    """A :class:`ConfigReplacement` with its placeholders filled and its expression compiled."""

    match: str
    template: Template
    equals: str | None = None
    pattern: regex.Pattern[str] | None = None

    @classmethod
    def build(cls, replacement: ConfigReplacement, values: PlaceholderValues) -> Rule:
        """The rule for ``replacement``; raises :class:`RuleProblem` for a bad expression."""
        condition = replacement.if_value
        if condition is not None and condition.startswith(REGEX_PREFIX):
            expression = condition.removeprefix(REGEX_PREFIX)
            try:
                pattern = regex.compile(expression)
            except regex.error as err:
                raise RuleProblem(f"{replacement.match}: bad regex:{expression!r} ({err})") from err
            template = Template.fill(replacement.value, values, groups=True)
            return cls(replacement.match, template, pattern=pattern)
        return cls(replacement.match, Template.fill(replacement.value, values), equals=condition)

    @property
    def creates(self) -> bool:
        """Whether a missing key is created (only by a rule without a condition)."""
        return self.equals is None and self.pattern is None

    def new_text(self, current: str | None) -> str | None:
        """What to write where the key holds ``current`` (None: missing), or None to leave it."""
        if self.pattern is not None:
            if current is None:
                return None
            try:
                if self.pattern.search(current, timeout=REGEX_TIMEOUT_SECONDS) is None:
                    return None
                return self.pattern.sub(
                    self.template.expand, current, timeout=REGEX_TIMEOUT_SECONDS
                )
            except TimeoutError as err:
                raise RuleProblem(f"{self.match}: the regex took too long; not applied") from err
        if self.equals is not None:
            return self.template.plain() if current == self.equals else None
        return self.template.plain()


def attempt(rule: Rule, current: str | None, problems: Problems) -> str | None:
    """:meth:`Rule.new_text`, with a problem recorded (and nothing set) if it has one."""
    try:
        return rule.new_text(current)
    except RuleProblem as err:
        problems.add(str(err))
        return None
