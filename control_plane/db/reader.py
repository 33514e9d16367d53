"""Reads of one statement each, outside any explicit transaction (authentication, lists).

A single SELECT sees one consistent snapshot by itself (SQLite's implicit read transaction,
PostgreSQL's autocommit), so BEGIN and COMMIT around it would only add round trips. Reads
that must agree with each other belong in one transaction (``read_session_factory``).

On SQLite the statement runs on a synchronous connection in a worker thread: one thread hop
per statement, where aiosqlite makes five (cursor, execute, fetch, close, rollback), each a
wake-up of the event loop. Those connections are ``query_only``: they cannot write.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final, TypeVarTuple

import sqlalchemy
from sqlalchemy import Engine, Row, Select, event
from sqlalchemy.ext.asyncio import AsyncEngine

_Columns = TypeVarTuple("_Columns")
# Two, so that one slow statement does not hold up every request; more only fight over the
# GIL (SQLite hands it back for every row fetched), which cost a fifth of the throughput.
SQLITE_READ_THREADS: Final = 2


def _sqlite_reader_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Autocommit: the driver never opens a transaction, each SELECT is its own snapshot.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA query_only=ON")
    cursor.close()


class StatementReader:
    """Runs one SELECT at a time on the control plane's database, each on its own."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine: AsyncEngine | None = None
        self._sqlite: tuple[Engine, ThreadPoolExecutor] | None = None
        if engine.dialect.name == "sqlite":
            if engine.url.database in (None, "", ":memory:"):
                raise ValueError("the reader threads need a SQLite file, not a database in memory")
            sqlite = sqlalchemy.create_engine(
                engine.url.set(drivername="sqlite+pysqlite"), pool_size=SQLITE_READ_THREADS
            )
            event.listen(sqlite, "connect", _sqlite_reader_pragmas)
            self._sqlite = (sqlite, ThreadPoolExecutor(SQLITE_READ_THREADS, "sqlite-reader"))
        else:
            self._engine = engine.execution_options(isolation_level="AUTOCOMMIT")

    async def rows(
        self, statement: Select[*_Columns], parameters: dict[str, Any]
    ) -> Sequence[Row[*_Columns]]:
        """All rows of ``statement`` with its bound ``parameters``."""
        if self._sqlite is not None:
            sqlite, threads = self._sqlite
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(threads, _rows, sqlite, statement, parameters)
        assert self._engine is not None
        async with self._engine.connect() as connection:
            result = await connection.execute(statement, parameters)
            return result.all()

    def close(self) -> None:
        """Stop the threads (none is busy once the app has stopped serving) and connections."""
        if self._sqlite is not None:
            sqlite, threads = self._sqlite
            threads.shutdown()
            sqlite.dispose()


def _rows(
    engine: Engine, statement: Select[*_Columns], parameters: dict[str, Any]
) -> Sequence[Row[*_Columns]]:
    with engine.connect() as connection:
        return connection.execute(statement, parameters).all()
