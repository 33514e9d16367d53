"""Import eggs into blueprints: all of them or, if any is refused, none.

An egg with a ``uuid`` updates the blueprint imported from that egg before, or creates one;
an egg without updates the blueprint of the same name, or creates one. Updating replaces the
blueprint whole and never touches a server's variable values (see docs/templates.md for what
a server whose value no longer fits a changed variable gets).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.models import Blueprint
from control_plane.errors import InvalidRequest
from control_plane.services import blueprints
from control_plane.services.eggs.mapping import MappedEgg, map_egg
from control_plane.services.eggs.report import ReportItem
from shared.errors import ErrorDetail


@dataclass
class ImportedEgg:
    blueprint: Blueprint
    created: bool
    version: str
    report: list[ReportItem]


class EggRefused(InvalidRequest):
    """One egg or more cannot be imported; ``details`` hold their whole reports."""

    @classmethod
    def of(cls, mapped: list[MappedEgg]) -> EggRefused:
        refused = [(index, egg) for index, egg in enumerate(mapped) if egg.blueprint is None]
        details = [
            ErrorDetail(
                loc=["eggs", index, item.field], msg=item.detail, type=f"egg_{item.outcome}"
            )
            for index, egg in refused
            for item in egg.report.items
        ]
        first = refused[0][1].report.refusals[0]
        count = f"{len(refused)} of {len(mapped)} eggs" if len(mapped) > 1 else "the egg"
        return cls(
            f"{count} cannot be imported (first: {first.field}: {first.detail}); "
            "nothing was imported",
            details=details,
        )


def map_eggs(eggs: list[dict[str, Any]], *, accept_unknown_rules: bool) -> list[MappedEgg]:
    """Every egg mapped; :class:`EggRefused` if any cannot be imported (CPU work: callers on
    the event loop run it in a thread)."""
    mapped = [map_egg(egg, accept_unknown_rules=accept_unknown_rules) for egg in eggs]
    if any(egg.blueprint is None for egg in mapped):
        raise EggRefused.of(mapped)
    return mapped


async def save_eggs(db: AsyncSession, mapped: list[MappedEgg]) -> list[ImportedEgg]:
    """Create or update the blueprint of each mapped egg, in ``db``'s transaction."""
    results = []
    for egg in mapped:
        data = egg.blueprint
        if data is None:
            raise EggRefused.of(mapped)
        if egg.egg_uuid is not None:
            existing = await blueprints.find_blueprint(db, egg_uuid=egg.egg_uuid)
        else:
            existing = await blueprints.find_blueprint(db, name=data.name)
        row = await blueprints.save_blueprint(db, data, existing, egg_uuid=egg.egg_uuid)
        results.append(ImportedEgg(row, existing is None, egg.version, egg.report.items))
    return results


async def import_eggs(
    db: AsyncSession, eggs: list[dict[str, Any]], *, accept_unknown_rules: bool = False
) -> list[ImportedEgg]:
    """Map and save ``eggs`` (for callers off the event loop's hot path: the CLI, benches)."""
    return await save_eggs(db, map_eggs(eggs, accept_unknown_rules=accept_unknown_rules))
