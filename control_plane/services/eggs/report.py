"""What an import did with each part of an egg: the report the API and the CLI show."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

# mapped: taken as it is (or in its plain translation); changed: taken, altered as the detail
# says; ignored: not taken, and nothing depends on it; refused: the egg cannot be imported.
Outcome = Literal["mapped", "changed", "refused", "ignored"]


@dataclass(frozen=True, slots=True)
class ReportItem:
    """One part of the egg (``field``, a dotted path such as ``variables.MAX_PLAYERS``)."""

    field: str
    outcome: Outcome
    detail: str


@dataclass
class EggReport:
    """The items of one egg's import, in the order the egg's parts were read."""

    items: list[ReportItem] = field(default_factory=list)

    def add(self, path: str, outcome: Outcome, detail: str) -> None:
        item = ReportItem(path, outcome, detail)
        if item not in self.items:  # the same rewrite in ten places is one item
            self.items.append(item)

    def mapped(self, path: str, detail: str) -> None:
        self.add(path, "mapped", detail)

    def changed(self, path: str, detail: str) -> None:
        self.add(path, "changed", detail)

    def ignored(self, path: str, detail: str) -> None:
        self.add(path, "ignored", detail)

    def refused(self, path: str, detail: str) -> None:
        self.add(path, "refused", detail)

    @property
    def refusals(self) -> list[ReportItem]:
        return [item for item in self.items if item.outcome == "refused"]
