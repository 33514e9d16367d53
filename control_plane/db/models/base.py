"""Declarative base with a naming convention, so migrations name constraints the same everywhere."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, ClassVar

from sqlalchemy import BigInteger, DateTime, Dialect, FetchedValue, MetaData, String, Uuid
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Aware UTC datetimes on every backend (SQLite would hand back naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if not isinstance(value, dt.datetime):
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


class UuidText(TypeDecorator[str]):
    """A UUID column read as its canonical text (``type_coerce(column, UuidText())``).

    For ids that are only sent on, as in a list: a ``uuid.UUID`` built per value costs more
    than the rest of reading the row. SQLite keeps SQLAlchemy's 32 hex digits; PostgreSQL's
    driver hands back its own UUID whatever the column is read as.
    """

    impl = String
    cache_ok = True

    def process_result_value(self, value: Any, dialect: Dialect) -> str | None:
        if isinstance(value, str):
            return f"{value[:8]}-{value[8:12]}-{value[12:16]}-{value[16:20]}-{value[20:]}"
        return None if value is None else str(value)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {dt.datetime: UTCDateTime(), uuid.UUID: Uuid()}


class IdMixin:
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)


class CreatedMixin:
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ListedRowMixin:
    """A row that users' server lists show: a database trigger gives ``list_version`` a new
    random value on every insert and update (migration 0031), and a user's lists' version
    sums those of the rows the user's list reads (``models/listing.py``). Never written by
    the application, and no ORM statement names it: deferred, so no read loads it; made by
    the database (``FetchedValue``), so no insert sends it; and not fetched back after an
    insert (``eager_defaults``), so no insert returns it either."""

    __mapper_args__: ClassVar[dict[str, Any]] = {"eager_defaults": False}

    list_version: Mapped[int] = mapped_column(
        BigInteger, deferred=True, server_default=FetchedValue()
    )
