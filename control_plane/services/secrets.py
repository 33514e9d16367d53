"""Re-encryption of every stored secret under the newest key, after a key rotation.

Walks each (model, attribute) of :data:`ENCRYPTED_COLUMNS` in primary-key order, ``batch`` rows
per transaction. Every value is decrypted (so unreadable ones are found and named); values
under an older key are written back under the newest. A value is only replaced if it is still
the one that was read, so a secret changed meanwhile by the running panel is never overwritten.
The walk can be interrupted at any point and run again: each value is always readable with the
configured keys, and a finished run leaves nothing for the next one to do.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, inspect, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.orm import DeclarativeBase

from control_plane.security.encryption import ENCRYPTED_COLUMNS, SecretBox, SecretDecryptionError


@dataclass(frozen=True)
class UnreadableSecret:
    """A stored value that no configured key decrypts at its place."""

    table: str
    column: str
    row_id: str


@dataclass(frozen=True)
class ReencryptReport:
    """What a run did; each non-empty (row, encrypted column) value counts once.

    ``rows_seen`` values were decrypted, ``rows_updated`` of them rewritten under ``key_id``;
    ``unreadable`` names those no configured key decrypts (left as they are).
    """

    rows_seen: int
    rows_updated: int
    key_id: str
    unreadable: tuple[UnreadableSecret, ...] = field(default=())


@dataclass
class _Tally:
    seen: int = 0
    updated: int = 0
    unreadable: list[UnreadableSecret] = field(default_factory=list)


@dataclass(frozen=True)
class _Place:
    """Where one registered attribute lives in SQL, and what its associated data names."""

    model: type[DeclarativeBase]
    table: str
    attr: str
    id_column: ColumnElement[Any]
    value_column: ColumnElement[Any]

    @classmethod
    def of(cls, model: type[DeclarativeBase], attr: str) -> _Place:
        mapper = inspect(model)
        columns = mapper.column_attrs
        if "id" not in columns or attr not in columns:
            raise LookupError(f"{model.__name__} needs mapped `id` and `{attr}` columns")
        return cls(
            model=model,
            table=model.__tablename__,
            attr=attr,
            id_column=columns["id"].columns[0],
            value_column=columns[attr].columns[0],
        )


async def reencrypt_all(
    engine: AsyncEngine, box: SecretBox, *, batch: int = 500
) -> ReencryptReport:
    """Bring every registered encrypted column under ``box``'s newest key; see the module doc."""
    if batch < 1:
        raise ValueError("batch must be at least 1")
    key_id = box.current_kid  # no key configured: fail before touching the database
    places = [_Place.of(model, attr) for model, attr in ENCRYPTED_COLUMNS]  # checked up front
    tally = _Tally()
    for place in places:
        last_id: uuid.UUID | None = None
        while True:
            async with engine.begin() as connection:
                last_id = await _reencrypt_batch(connection, box, place, last_id, batch, tally)
            if last_id is None:
                break
    return ReencryptReport(tally.seen, tally.updated, key_id, tuple(tally.unreadable))


async def _reencrypt_batch(
    connection: AsyncConnection,
    box: SecretBox,
    place: _Place,
    after: uuid.UUID | None,
    batch: int,
    tally: _Tally,
) -> uuid.UUID | None:
    """One batch in the caller's transaction; the last id seen, or ``None`` when done."""
    query = select(place.id_column, place.value_column).where(place.value_column.is_not(None))
    if after is not None:
        query = query.where(place.id_column > after)
    rows = (await connection.execute(query.order_by(place.id_column).limit(batch))).all()
    for row_id, token in rows:
        tally.seen += 1
        new_token = _upgraded(box, place, str(row_id), token, tally)
        if new_token is None:
            continue
        result = await connection.execute(
            update(place.model)
            .where(place.id_column == row_id, place.value_column == token)
            .values({place.value_column: new_token})
        )
        tally.updated += result.rowcount
    return rows[-1][0] if len(rows) == batch else None


def _upgraded(box: SecretBox, place: _Place, row_id: str, token: str, tally: _Tally) -> str | None:
    """``token`` under the newest key if it is under an older one; unreadable ones are tallied."""
    where = {"table": place.table, "column": place.attr, "row_id": row_id}
    try:
        plaintext = box.decrypt(token, **where)
        if not box.needs_reencryption(token):
            return None
    except SecretDecryptionError:
        tally.unreadable.append(UnreadableSecret(**where))
        return None
    return box.encrypt(plaintext, **where)
