"""The ids the Pterodactyl-compatible API names objects by, stored beside our UUIDs.

``compat_id`` is a stable integer per table, taken from ``compat_counters`` when the row is
first flushed (a row lock on the counter: two transactions never draw the same number, on
SQLite or PostgreSQL); ``identifier`` is a server's 8-character short id. Both are assigned
here, for every insert through the ORM, so no code that makes these rows has to remember.
"""

from __future__ import annotations

import secrets
import uuid
from collections import defaultdict
from typing import Any

from sqlalchemy import BigInteger, Integer, String, event, insert, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from control_plane.db.models.base import Base


class CompatCounter(Base):
    """The last ``compat_id`` given in one table."""

    __tablename__ = "compat_counters"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    last_value: Mapped[int] = mapped_column(BigInteger)


class CompatIdMixin:
    """A stable integer id for the Pterodactyl-compatible API (assigned on insert)."""

    compat_id: Mapped[int | None] = mapped_column(Integer, default=None, unique=True, index=True)


class ShortIdentifierMixin:
    """A server's 8-character ``identifier``: its UUID's first 8 hex digits unless taken."""

    identifier: Mapped[str | None] = mapped_column(String(8), default=None, unique=True, index=True)


def _draw(session: Session, table: str, count: int) -> int:
    """Take ``count`` numbers of ``table``'s counter; the first of them."""
    connection = session.connection()
    last = connection.execute(
        update(CompatCounter)
        .where(CompatCounter.name == table)
        .values(last_value=CompatCounter.last_value + count)
        .returning(CompatCounter.last_value)
    ).scalar()
    if last is None:
        # A table numbered by no migration yet (a database made by create_all).
        connection.execute(insert(CompatCounter).values(name=table, last_value=count))
        last = count
    return int(last) - count + 1


def _identifier(session: Session, model: type[Any], row: Any) -> str:
    if row.id is None:
        row.id = uuid.uuid4()
    candidate = row.id.hex[:8]
    taken = session.connection().execute
    while taken(select(model.id).where(model.identifier == candidate)).first() is not None:
        candidate = secrets.token_hex(4)
    return str(candidate)


@event.listens_for(Session, "before_flush")
def _assign_compat_ids(session: Session, _context: Any, _instances: Any) -> None:
    waiting: dict[str, list[CompatIdMixin]] = defaultdict(list)
    for row in session.new:
        if isinstance(row, CompatIdMixin) and row.compat_id is None:
            waiting[row.__table__.name].append(row)  # type: ignore[attr-defined]
        if isinstance(row, ShortIdentifierMixin) and row.identifier is None:
            row.identifier = _identifier(session, type(row), row)
    for table, rows in sorted(waiting.items()):
        first = _draw(session, table, len(rows))
        for offset, row in enumerate(rows):
            row.compat_id = first + offset
