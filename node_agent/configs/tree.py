"""Rules applied to a parsed document of tables and lists (JSON, YAML, TOML).

A rule's path is walked from the document's root; ``*`` fans out over every child. A rule
without a condition and without a wildcard creates the tables its path is missing, then the
key. A key that holds a table or a list is never replaced by a value.

Values are typed like the value they replace: a string stays a string (``"25565"`` in a
JSON file stays quoted), a number stays a number when the new text is one, a boolean when it
is ``true``/``false``. A new key (or a null one) gets a boolean for ``true``/``false``, an
integer for an integer literal, otherwise a string: Wings writes integers the same way.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, MutableMapping, MutableSequence, Sequence
from typing import Any, Final

from node_agent.configs.keys import Index, Name, Segment, Wildcard, is_concrete, parse_key
from node_agent.configs.rules import Problems, Rule, RuleProblem

# Nodes one rule may visit: wildcards over a YAML document full of aliases must stay cheap.
MAX_VISITS: Final = 100_000
_INTEGER: Final = re.compile(r"-?(?:0|[1-9][0-9]*)")
TableFactory = Callable[[], MutableMapping[Any, Any]]
Slot = tuple[Any, Any]  # (container, key or index)


def _is_table(node: object) -> bool:
    return isinstance(node, MutableMapping)


def _is_list(node: object) -> bool:
    return isinstance(node, MutableSequence) and not isinstance(node, str | bytes)


def text_of(value: object) -> str | None:
    """A value as text, for conditions (None: a table or a list, which is no value)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    if _is_table(value) or _is_list(value):
        return None
    return str(value)


def typed(text: str, current: object) -> object:
    """``text`` as the type of ``current`` (the value it replaces; None for a new key)."""
    if isinstance(current, bool):
        lowered = text.lower()
        return lowered == "true" if lowered in {"true", "false"} else text
    if isinstance(current, int | float):
        if _INTEGER.fullmatch(text) and isinstance(current, int):
            return int(text)
        try:
            return float(text) if isinstance(current, float) or "." in text else int(text)
        except ValueError:
            return text
    if isinstance(current, str):
        return text
    if text in {"true", "false"}:
        return text == "true"
    if _INTEGER.fullmatch(text):
        return int(text)
    return text


class _Walk:
    """One rule's walk through one document."""

    def __init__(self, rule: Rule, segments: tuple[Segment, ...], new_table: TableFactory):
        self.rule = rule
        self.segments = segments
        self.new_table = new_table
        self.create = rule.creates and is_concrete(segments)
        self.visits = 0

    def _count(self) -> None:
        self.visits += 1
        if self.visits > MAX_VISITS:
            raise RuleProblem(f"{self.rule.match}: matches too many keys; not applied")

    def select(self, node: Any, segment: Segment, *, last: bool) -> Iterator[Slot]:
        """The (container, key) places ``segment`` names below ``node``."""
        if isinstance(segment, Name):
            if _is_table(node) and (segment.text in node or (last and self.create)):
                yield node, segment.text
        elif isinstance(segment, Index):
            if _is_list(node) and segment.number < len(node):
                yield node, segment.number
        elif isinstance(segment, Wildcard):
            if _is_table(node):
                yield from ((node, key) for key in list(node.keys()))
            elif _is_list(node):
                yield from ((node, index) for index in range(len(node)))
        else:
            raise RuleProblem(f"{self.rule.match}: [@attribute] is for XML files only")

    def descend(self, node: Any, position: int) -> Iterator[Any]:
        """The children of ``node`` that segment ``position`` names, tables created where
        the rest of the path is names only (a list is never made up)."""
        segment = self.segments[position]
        rest_named = all(isinstance(later, Name) for later in self.segments[position:])
        if self.create and rest_named and isinstance(segment, Name) and _is_table(node):
            if segment.text not in node:
                node[segment.text] = self.new_table()
            child = node[segment.text]
            if not (_is_table(child) or _is_list(child)):
                raise RuleProblem(f"{self.rule.match}: {segment.text} is a value, not a table")
            yield child
            return
        for container, key in self.select(node, segment, last=False):
            yield container[key]

    def slots(self, root: Any) -> Iterator[Slot]:
        nodes = [root]
        for position in range(len(self.segments) - 1):
            following = []
            for node in nodes:
                for child in self.descend(node, position):
                    self._count()
                    following.append(child)
            nodes = following
        for node in nodes:
            for slot in self.select(node, self.segments[-1], last=True):
                self._count()
                yield slot

    def apply(self, root: Any) -> int:
        changed = 0
        for container, key in list(self.slots(root)):
            exists = key in container if _is_table(container) else True
            current = container[key] if exists else None
            if exists and (_is_table(current) or _is_list(current)):
                if not isinstance(self.segments[-1], Wildcard):
                    raise RuleProblem(f"{self.rule.match} is a table or a list, not a value")
                continue
            text = self.rule.new_text(text_of(current) if exists else None)
            if text is None:
                continue
            value = typed(text, current)
            if exists and type(value) is type(current) and value == current:
                continue
            container[key] = value
            changed += 1
        return changed


def apply_to_tree(
    root: Any, rules: Sequence[Rule], problems: Problems, new_table: TableFactory
) -> int:
    """Apply ``rules`` to the document ``root`` in place; return how many values changed."""
    changed = 0
    for rule in rules:
        try:
            segments = parse_key(rule.match)
            changed += _Walk(rule, segments, new_table).apply(root)
        except (RuleProblem, ValueError) as err:
            problems.add(str(err))
    return changed
