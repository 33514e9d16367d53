"""Ids in the Pterodactyl-compatible paths: integers (``compat_id``), server identifiers and
external ids, each spelled one way only and resolved to the UUID of the row it names.

A number with a leading zero or a sign, an identifier in capitals or a UUID where a number
belongs is simply not found, as a respelled UUID is on our own routes.
"""

from __future__ import annotations

import re
import uuid
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.api.routing import PathId
from control_plane.db.models import (
    Allocation,
    ApiKey,
    Blueprint,
    Location,
    Node,
    Schedule,
    ScheduleTask,
    Server,
    User,
)
from control_plane.schemas.compat import EXTERNAL_ID

NUMBER: Final = re.compile(r"[1-9][0-9]{0,8}")
IDENTIFIER: Final = re.compile(r"[0-9a-f]{8}")
EXTERNAL: Final = re.compile(EXTERNAL_ID.strip("^$"))
# A client key's identifier, as Pterodactyl names keys in paths (``ptlc_`` and 11 more).
KEY_IDENTIFIER: Final = re.compile(r"ptlc_[A-Za-z0-9]{11}")
# The one nest every blueprint is in (docs/pterodactyl-compat.md).
NEST_ID: Final = 1


def _by_number(model: Any) -> PathId:
    async def resolve(db: AsyncSession, value: str) -> uuid.UUID | None:
        found: uuid.UUID | None = await db.scalar(
            select(model.id).where(model.compat_id == int(value))
        )
        return found

    return PathId(NUMBER, resolve)


def _by_external(model: Any) -> PathId:
    async def resolve(db: AsyncSession, value: str) -> uuid.UUID | None:
        found: uuid.UUID | None = await db.scalar(
            select(model.id).where(model.external_id == value)
        )
        return found

    return PathId(EXTERNAL, resolve)


async def _server_by_identifier(db: AsyncSession, value: str) -> uuid.UUID | None:
    found: uuid.UUID | None = await db.scalar(select(Server.id).where(Server.identifier == value))
    return found


async def _nest(_db: AsyncSession, value: str) -> uuid.UUID | None:
    # Not a row: only the one nest exists (its "UUID" is never read).
    return uuid.UUID(int=NEST_ID) if int(value) == NEST_ID else None


APPLICATION_IDS: Final = {
    "user_id": _by_number(User),
    "location_id": _by_number(Location),
    "node_id": _by_number(Node),
    "allocation_id": _by_number(Allocation),
    "server_id": _by_number(Server),
    "egg_id": _by_number(Blueprint),
    "nest_id": PathId(NUMBER, _nest),
    "external_id": PathId(EXTERNAL),
}
EXTERNAL_USER: Final = {"external_id": _by_external(User)}
EXTERNAL_SERVER: Final = {"external_id": _by_external(Server)}


async def _client_key(db: AsyncSession, value: str) -> uuid.UUID | None:
    found: uuid.UUID | None = await db.scalar(
        select(ApiKey.id).where(ApiKey.prefix == value, ApiKey.kind == "client")
    )
    return found


CLIENT_IDS: Final = {"server_id": PathId(IDENTIFIER, _server_by_identifier)}
# One of the server's ports by its number: whose server it is on is the route's check.
CLIENT_ALLOCATION_IDS: Final = {**CLIENT_IDS, "allocation_id": _by_number(Allocation)}
# A schedule and its task by their numbers: whose server they are on is the route's check.
SCHEDULE_IDS: Final = {
    **CLIENT_IDS,
    "schedule_id": _by_number(Schedule),
    "task_id": _by_number(ScheduleTask),
}
# The caller's own keys by identifier: whose key it is is the route's check.
ACCOUNT_IDS: Final = {"key_id": PathId(KEY_IDENTIFIER, _client_key)}


async def uuid_of(db: AsyncSession, model: Any, number: int) -> uuid.UUID | None:
    """The UUID of ``model``'s row numbered ``number`` (for numbers in a body)."""
    found: uuid.UUID | None = await db.scalar(select(model.id).where(model.compat_id == number))
    return found


async def numbers_of(db: AsyncSession, model: Any, ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
    """``compat_id`` of each of ``ids`` (rows without one are left out)."""
    if not ids:
        return {}
    rows = await db.execute(select(model.id, model.compat_id).where(model.id.in_(ids)))
    return {row_id: number for row_id, number in rows if number is not None}
