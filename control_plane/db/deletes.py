"""A row deleted twice at the same moment is deleted once: the later request is refused.

Two requests that read the same row and both delete it (an SSH key removed from two tabs,
an administrator and the owner removing a webhook) would otherwise both succeed on
PostgreSQL: the second ``DELETE`` waits for the first, then matches no row, and SQLAlchemy
only warns — the second request answered 204 and wrote its audit entry for a deletion that
never happened. Updates already fail that way (``StaleDataError``); deletes now do too.

Before every flush the rows the session is about to delete are locked (``FOR UPDATE``: on
PostgreSQL this waits for a concurrent deleter to commit) and counted. A row that is gone
raises ``StaleDataError``, which ``control_plane.db.faults`` answers with ``409 conflict``
and rolls back — audit entry included. On SQLite writers already take turns (``BEGIN
IMMEDIATE``), so the later one reads after the earlier committed and gets 404 before this;
the check costs one ``SELECT`` there.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import event, inspect, select
from sqlalchemy.orm import Mapper, Session
from sqlalchemy.orm.exc import StaleDataError


@event.listens_for(Session, "before_flush")
def _rows_to_delete_still_exist(session: Session, _context: Any, _instances: Any) -> None:
    if not session.deleted:
        return
    wanted: dict[Mapper[Any], set[Any]] = defaultdict(set)
    for row in session.deleted:
        state = inspect(row)
        if state.key is not None and len(state.mapper.primary_key) == 1:
            wanted[state.mapper.base_mapper].add(state.key[1][0])
    # One order for every request (model, then key: PostgreSQL locks in the ORDER BY's order),
    # so two deleters never wait on each other in opposite orders. Models with a composite
    # key are not checked (none is deleted through the ORM).
    for mapper in sorted(wanted, key=lambda m: m.class_.__name__):
        key_column = mapper.primary_key[0]
        ids = list(wanted[mapper])
        found = session.execute(
            select(key_column).where(key_column.in_(ids)).order_by(key_column).with_for_update()
        ).scalars()
        if missing := len(ids) - len(set(found)):
            raise StaleDataError(
                f"{missing} {mapper.class_.__name__} row(s) to delete were deleted by another"
                " transaction"
            )
