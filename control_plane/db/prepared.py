"""Reads without SQLAlchemy's per-execution machinery: a statement compiled once, run
on the DB-API cursor (SQLite) or the asyncpg connection, its values converted by SQLAlchemy's
own type processors.

``Connection.execute`` builds an execution context, a cursor result and its metadata for
every statement: about 75 µs of the authentication read's 95 µs, and as much again for a
list's page. The reads of ``StatementReader`` are a handful of fixed SELECTs run on every
request, so each is compiled once and only its parameters change. Values are converted by the
same bind and result processors SQLAlchemy would apply (``dialect_impl(...).bind_processor`` /
``result_processor``), some sooner: immutable results are kept by raw text (``_faster``).
``tests/integration/control_plane/test_prepared_reads.py`` compares the rows with
SQLAlchemy's for every statement that runs this way.

A statement that compiles to more than fixed SQL with positional parameters (expanding ``IN``
lists, literal-rendered values) is refused (:class:`Unpreparable`); the reader then runs it
through SQLAlchemy as before.
"""

from __future__ import annotations

import collections
import datetime as dt
import sqlite3
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Final

from sqlalchemy import JSON, Dialect, Select
from sqlalchemy.types import TypeEngine


class Unpreparable(ValueError):
    """The statement needs SQLAlchemy's execution (values rendered at execution time)."""


Processor = Callable[[Any], Any]


# Values read anew on every request (a key's and its user's ids, their times) are converted
# by the same processor again and again: SQLAlchemy's UUID and date-time processors cost ~1 µs
# a value, a dict look-up a tenth of that. Only results that cannot change are kept.
_IMMUTABLE: Final = (uuid.UUID, dt.datetime, dt.date, dt.time, dt.timedelta, str, int, float)
MEMO_SIZE: Final = 4096
_MISSING: Final = object()
_REQUIRED: Final = object()


def _memoised(processor: Processor) -> Processor:
    """``processor`` with its immutable results for text values (ids, times: SQLite gives
    both as text) kept by that text: at most ``MEMO_SIZE``, all dropped when full (the
    values in use come back at once)."""
    kept: dict[str, Any] = {}

    def process(value: Any) -> Any:
        if type(value) is not str:
            return processor(value)
        result = kept.get(value, _MISSING)
        if result is _MISSING:
            result = processor(value)
            if isinstance(result, _IMMUTABLE):
                if len(kept) >= MEMO_SIZE:
                    kept.clear()
                kept[value] = result
        return result

    return process


def _faster(column_type: TypeEngine[Any], processor: Processor) -> Processor:
    """SQLAlchemy's result ``processor`` for ``column_type``, with the same results sooner
    (JSON is read by the engines' own quicker parser, ``db.json_values``)."""
    if isinstance(column_type, JSON):
        return processor  # lists and objects: nothing to keep
    return _memoised(processor)


class PreparedRead:
    """One SELECT compiled for a SQLite dialect; rows as named tuples (by index, by slice and
    by column name, as the reader's callers read SQLAlchemy's rows)."""

    def __init__(self, statement: Select[*tuple[Any, ...]], dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        if compiled.post_compile_params or compiled.literal_execute_params:
            raise Unpreparable("the statement renders values at execution time")
        if dialect.paramstyle not in ("qmark", "numeric_dollar"):
            # SQLite's '?' and asyncpg's '$1': positional, in ``positiontup``'s order.
            raise Unpreparable(f"positional parameters only, not {dialect.paramstyle}")
        self.sql = str(compiled)
        self._compiled = compiled
        self._positions: tuple[str, ...] = tuple(compiled.positiontup or ())
        binds: dict[str, Processor] = {}
        for name in self._positions:
            processor = compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)
            if processor is not None:
                binds[name] = processor
        self._binds = binds
        # Per position: its name, the value it has unless given (_REQUIRED: none) and its bind
        # processor; None when a value is computed at execution (SQLAlchemy's path then).
        plan: list[tuple[str, Any, Processor | None]] | None = []
        for name in self._positions:
            bind = compiled.binds[name]
            if bind.callable is not None or plan is None:
                plan = None
                continue
            default = _REQUIRED if bind.required else bind.value
            plan.append((name, default, binds.get(name)))
        self._plan = None if plan is None else tuple(plan)
        columns = list(statement.selected_columns)
        self._width = len(columns)
        self._processors: list[tuple[int, Processor]] = []
        for index, column in enumerate(columns):
            processor = column.type.dialect_impl(dialect).result_processor(dialect, None)
            if processor is not None:
                self._processors.append((index, _faster(column.type, processor)))
        # rename: a name that is no identifier or comes twice becomes _N (read by index).
        row_type = collections.namedtuple(  # type: ignore[misc]  # names known at run time
            "ReadRow", [str(column.key) for column in columns], rename=True
        )
        self._make: Callable[[Any], Any] = row_type._make

    def arguments(self, parameters: dict[str, Any]) -> list[Any]:
        """The positional values for ``parameters`` (bound parameters' defaults included)."""
        if self._plan is not None:
            arguments: list[Any] = []
            for name, default, process in self._plan:
                value = parameters.get(name, default)
                if value is _REQUIRED:
                    break  # SQLAlchemy's own error, below
                arguments.append(value if process is None else process(value))
            else:
                return arguments
        values = self._compiled.construct_params(parameters)
        binds = self._binds
        return [
            binds[name](values[name]) if name in binds else values[name] for name in self._positions
        ]

    def run(self, connection: sqlite3.Connection, parameters: dict[str, Any]) -> list[Any]:
        """All rows of the statement on ``connection`` (a DB-API connection in autocommit)."""
        return self.rows_of(connection.execute(self.sql, self.arguments(parameters)).fetchall())

    def rows_of(self, fetched: Sequence[Any]) -> list[Any]:
        """The driver's rows of this statement as SQLAlchemy would give them."""
        if fetched and len(fetched[0]) != self._width:
            raise Unpreparable("the statement's columns are not the rows' columns")
        make = self._make
        processors = self._processors
        if not processors:
            return [make(row) for row in fetched]
        rows: list[Any] = []
        for row in fetched:
            values = list(row)
            for index, processor in processors:
                values[index] = processor(values[index])
            rows.append(make(values))
        return rows
