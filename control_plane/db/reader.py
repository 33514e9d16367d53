"""Reads of one statement each, outside any explicit transaction (authentication, lists).

A single SELECT sees one consistent snapshot by itself (SQLite's implicit read transaction,
PostgreSQL's autocommit), so BEGIN and COMMIT around it would only add round trips. Reads
that must agree with each other belong in one transaction (``read_session_factory``).

On SQLite the statement runs on a synchronous connection in a worker thread: one thread hop
per statement, where aiosqlite makes five (cursor, execute, fetch, close, rollback), each a
wake-up of the event loop. Those connections are ``query_only``: they cannot write.

The authentication read (one row by a unique index, on every request) runs on SQLite without
the thread hop, on the event loop's own connection (``one_row``): compiled once and run on
the DB-API cursor (``control_plane.db.prepared``), with no busy timeout. A WAL reader takes
no lock that a writer holds, so it never waits; should SQLite still answer "busy" (a
connection in exclusive mode, a WAL being recovered) the read goes to the threads, which
wait as before. The hop and SQLAlchemy's execution cost more CPU than the read itself. On
PostgreSQL that read is also compiled once and run on an asyncpg connection of the read pool
(its JSON codecs are SQLAlchemy's) that the reader keeps checked out between reads; any
failure there drops the connection and runs the statement through SQLAlchemy, whose handling
of a dead connection or a database that is down is the one below. A list's page, read anew
after a change, runs the same way (``fixed_rows``; on SQLite in the threads).

On PostgreSQL the reads have a small pool of their own, in autocommit, that does not ping a
connection before each use (the engine's ``pool_pre_ping`` costs BEGIN, a ping and ROLLBACK:
three round trips per statement). A connection found dead while reading (PostgreSQL was
restarted) invalidates the pool and the statement runs once more on a new connection; a read
has no effect to repeat. A database that is down still fails the read (503).
"""

from __future__ import annotations

import asyncio
import collections
import sqlite3
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final, TypeVarTuple, cast

import sqlalchemy
import sqlalchemy.exc
from sqlalchemy import Engine, Row, Select, event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from control_plane.db import json_values
from control_plane.db.prepared import PreparedRead, Unpreparable

_Columns = TypeVarTuple("_Columns")
# Two, so that one slow statement does not hold up every request; more only fight over the
# GIL (SQLite hands it back for every row fetched), which cost a fifth of the throughput.
SQLITE_READ_THREADS: Final = 2
# PostgreSQL connections for reads, per replica (beside the engine's own pool): a read holds
# one for a single statement. Those beyond the pool's size are closed as they come back when
# the pool is full, and opened anew at the next burst (a TCP and TLS handshake each): with 5
# and 8 requests in flight, opening connections was a quarter of the authentication read's
# CPU (py-spy, bench/api.py). Twelve kept cover that (eight of them for the compiled reads,
# below); five more for bursts.
POSTGRES_READ_POOL: Final = 12
POSTGRES_READ_OVERFLOW: Final = 5
# Of those, how many the compiled reads (authentication, list pages) keep checked out between
# reads, on a stack of their own: taking one from SQLAlchemy's pool and giving it back (a
# greenlet switch each, the pool's bookkeeping) cost about as much CPU as the read itself.
# Up to eight are kept (with 4, eight requests in flight took and gave back connections on
# every other request: 10 us of CPU a list); the other reads keep the pool's other four and
# its overflow. A compiled read that finds all eight busy waits for the first one back
# rather than taking a ninth from the pool for one statement: with sixteen requests in
# flight, half the reads did, and a list cost half as much CPU again (bench/api.py
# ``--concurrency 16``).
POSTGRES_HELD: Final = 8
# How long a compiled read waits for one of them before it goes through the pool instead: a
# read takes well under a millisecond; this long, the kept ones are being opened to a
# database that does not answer, and the pool's timeout and errors should decide.
HELD_WAIT_SECONDS: Final = 1.0


def _sqlite_loop_connection(path: str) -> sqlite3.Connection:
    """The event loop's own read connection: autocommit, read-only, never waiting for a lock."""
    connection = sqlite3.connect(path, isolation_level=None, timeout=0)
    connection.execute("PRAGMA busy_timeout=0")
    connection.execute("PRAGMA query_only=ON")
    return connection


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
        self._loop_connection: sqlite3.Connection | None = None
        # id(statement) → (the statement, kept so that its id is never reused; its form, None
        # for one that SQLAlchemy must run).
        self._prepared: dict[int, tuple[Select[Any], PreparedRead | None]] = {}
        # PostgreSQL: connections of the read pool the compiled reads keep between reads (the
        # idle ones), how many they keep in all (idle or reading), and the reads waiting for
        # one when all are reading.
        self._held: list[tuple[AsyncConnection, Any]] = []
        self._holding = 0
        self._waiting: collections.deque[asyncio.Future[tuple[AsyncConnection, Any] | None]] = (
            collections.deque()
        )
        self._dropping: set[asyncio.Task[None]] = set()
        if engine.dialect.name == "sqlite":
            if engine.url.database in (None, "", ":memory:"):
                raise ValueError("the reader threads need a SQLite file, not a database in memory")
            sqlite = sqlalchemy.create_engine(
                engine.url.set(drivername="sqlite+pysqlite"),
                pool_size=SQLITE_READ_THREADS,
                json_deserializer=json_values.loads,
            )
            event.listen(sqlite, "connect", _sqlite_reader_pragmas)
            self._sqlite = (sqlite, ThreadPoolExecutor(SQLITE_READ_THREADS, "sqlite-reader"))
        else:
            self._engine = create_async_engine(
                engine.url,
                isolation_level="AUTOCOMMIT",
                pool_size=POSTGRES_READ_POOL,
                max_overflow=POSTGRES_READ_OVERFLOW,
                # Autocommit: there is never a transaction to roll back on the way back in.
                pool_reset_on_return=None,
                json_deserializer=json_values.loads,
            )

    async def rows(
        self, statement: Select[*_Columns], parameters: dict[str, Any]
    ) -> Sequence[Row[*_Columns]]:
        """All rows of ``statement`` with its bound ``parameters``."""
        if self._sqlite is not None:
            sqlite, threads = self._sqlite
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(threads, _rows, sqlite, statement, parameters)
        assert self._engine is not None
        try:
            return await _statement_rows(self._engine, statement, parameters)
        except sqlalchemy.exc.DBAPIError as err:
            if not err.connection_invalidated:
                raise
            # A pooled connection had died (PostgreSQL restarted): the pool is invalidated,
            # the next connection is a new one.
            return await _statement_rows(self._engine, statement, parameters)

    async def fixed_rows(
        self, statement: Select[*_Columns], parameters: dict[str, Any]
    ) -> Sequence[Row[*_Columns]]:
        """All rows of one of the few fixed statements read on every request (a list's page):
        compiled once and run on the driver, as ``one_row`` does, but on SQLite in the reader
        threads (a page may take SQLite longer than the event loop should wait)."""
        prepared = self._prepared_form(statement)
        if prepared is None:
            return await self.rows(statement, parameters)
        if self._sqlite is None:
            return await self._postgres_prepared(prepared, statement, parameters)
        sqlite, threads = self._sqlite
        loop = asyncio.get_running_loop()
        fetched = await loop.run_in_executor(threads, _prepared_rows, sqlite, prepared, parameters)
        if fetched is None:
            # SQLite refused (busy past the timeout, disk I/O...): SQLAlchemy's run of the
            # statement raises the error the fault handling knows.
            return await self.rows(statement, parameters)
        return cast("Sequence[Row[*_Columns]]", fetched)

    async def one_row(
        self, statement: Select[*_Columns], parameters: dict[str, Any]
    ) -> Sequence[Row[*_Columns]]:
        """The rows of a ``statement`` that reads one row by a unique index (authentication):
        compiled once and run on the driver; on SQLite on the event loop itself."""
        prepared = self._prepared_form(statement)
        if prepared is None:
            return await self.rows(statement, parameters)
        if self._sqlite is None:
            return await self._postgres_prepared(prepared, statement, parameters)
        try:
            if self._loop_connection is None:
                self._loop_connection = _sqlite_loop_connection(str(self._sqlite[0].url.database))
            rows = prepared.run(self._loop_connection, parameters)
            # Named tuples: read by index, slice and column name, as Row is by the callers.
            return cast("Sequence[Row[*_Columns]]", rows)
        except sqlite3.OperationalError:
            # Busy or locked (see the module's docstring): the threads wait for it.
            return await self.rows(statement, parameters)

    async def _postgres_prepared(
        self, prepared: PreparedRead, statement: Select[*_Columns], parameters: dict[str, Any]
    ) -> Sequence[Row[*_Columns]]:
        held = await self._take_held()
        if held is None:
            return await self.rows(statement, parameters)
        connection, driver = held
        try:
            fetched = await driver.fetch(prepared.sql, *prepared.arguments(parameters))
        except asyncio.CancelledError:
            # Stopped mid-statement: this connection is never handed to another read.
            self._lost_held()
            driver.terminate()
            dropping = asyncio.ensure_future(connection.invalidate())
            self._dropping.add(dropping)
            dropping.add_done_callback(self._dropping.discard)
            raise
        except Exception:
            # A dead connection (PostgreSQL restarted or stopped: asyncpg says so in more
            # ways than one, InternalClientError among them) or anything unexpected: this
            # one is dropped, and SQLAlchemy runs the statement below with its own handling
            # (a new connection, or the error that answers 503) — outside this handler, so
            # that its error is judged by itself, not chained to this one.
            self._lost_held()
            await connection.invalidate()
            await connection.close()
            fetched = None
        if fetched is None:
            return await self.rows(statement, parameters)
        self._give_back(held)
        return cast("Sequence[Row[*_Columns]]", prepared.rows_of(fetched))

    async def _take_held(self) -> tuple[AsyncConnection, Any] | None:
        """An idle kept connection; else a new one while fewer than ``POSTGRES_HELD`` are
        kept; else the first one given back (in the order the reads came); None if none came
        back within ``HELD_WAIT_SECONDS`` (the read goes through the pool)."""
        while True:
            if self._held:
                return self._held.pop()
            if self._holding < POSTGRES_HELD:
                self._holding += 1
                try:
                    return await self._hold()
                except BaseException:
                    self._lost_held()
                    raise
            waiter: asyncio.Future[tuple[AsyncConnection, Any] | None]
            waiter = asyncio.get_running_loop().create_future()
            self._waiting.append(waiter)
            try:
                await asyncio.wait((waiter,), timeout=HELD_WAIT_SECONDS)
            except asyncio.CancelledError:
                self._leave(waiter)
                raise
            if not waiter.done():
                # None came back in time (connections being opened to a database that does
                # not answer): the pool's own path, with its timeout and errors.
                self._leave(waiter)
                return None
            handed = waiter.result()
            if handed is not None:
                return handed
            # A kept connection was dropped: this read may open the one that replaces it.

    def _leave(self, waiter: asyncio.Future[tuple[AsyncConnection, Any] | None]) -> None:
        """A read stops waiting: out of the queue; a connection (or the right to open one)
        it was handed meanwhile goes to the next read."""
        if waiter.done() and not waiter.cancelled():
            given = waiter.result()
            if given is not None:
                self._give_back(given)
            else:
                self._wake_one(None)
            return
        waiter.cancel()
        if waiter in self._waiting:
            self._waiting.remove(waiter)

    def _give_back(self, held: tuple[AsyncConnection, Any]) -> None:
        if not self._wake_one(held):
            self._held.append(held)

    def _lost_held(self) -> None:
        """A kept connection is gone (dropped, or never opened): one fewer is kept, and a
        waiting read may open another."""
        self._holding -= 1
        self._wake_one(None)

    def _wake_one(self, held: tuple[AsyncConnection, Any] | None) -> bool:
        """Hand ``held`` (None: the right to open one) to the longest-waiting read."""
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(held)
                return True
        return False

    async def _hold(self) -> tuple[AsyncConnection, Any]:
        """A connection of the read pool and its asyncpg connection, for the reads by index."""
        assert self._engine is not None
        connection = await self._engine.connect()
        try:
            raw = await connection.get_raw_connection()
        except BaseException:
            await connection.close()
            raise
        return connection, raw.driver_connection

    def _prepared_form(self, statement: Select[*_Columns]) -> PreparedRead | None:
        found = self._prepared.get(id(statement))
        if found is not None:
            return found[1]
        dialect = self._sqlite[0].dialect if self._sqlite is not None else self._dialect()
        try:
            prepared: PreparedRead | None = PreparedRead(statement, dialect)
        except Unpreparable:
            prepared = None
        self._prepared[id(statement)] = (cast(Select[Any], statement), prepared)
        return prepared

    def _dialect(self) -> sqlalchemy.Dialect:
        assert self._engine is not None
        return self._engine.dialect

    @property
    def pool(self) -> sqlalchemy.Pool:
        """The reads' own connection pool (the metrics report it). Connections the compiled
        reads keep between reads (up to ``POSTGRES_HELD``) are checked out of it: in use."""
        if self._sqlite is not None:
            return self._sqlite[0].pool
        assert self._engine is not None
        return self._engine.sync_engine.pool

    async def close(self) -> None:
        """Stop the threads (none is busy once the app has stopped serving) and connections."""
        if self._sqlite is not None:
            sqlite, threads = self._sqlite
            threads.shutdown()
            sqlite.dispose()
        if self._loop_connection is not None:
            self._loop_connection.close()
        if self._engine is not None:
            # Cancelled reads' connections are being invalidated: done before the pool goes.
            await asyncio.gather(*self._dropping, return_exceptions=True)
            while self._held:
                await self._held.pop()[0].close()
            await self._engine.dispose()


async def _statement_rows(
    engine: AsyncEngine, statement: Select[*_Columns], parameters: dict[str, Any]
) -> Sequence[Row[*_Columns]]:
    async with engine.connect() as connection:
        result = await connection.execute(statement, parameters)
        return result.all()


def _rows(
    engine: Engine, statement: Select[*_Columns], parameters: dict[str, Any]
) -> Sequence[Row[*_Columns]]:
    with engine.connect() as connection:
        return connection.execute(statement, parameters).all()


def _prepared_rows(
    engine: Engine, prepared: PreparedRead, parameters: dict[str, Any]
) -> list[Any] | None:
    """``prepared``'s rows on a reader connection (in a reader thread), None if SQLite refused."""
    with engine.connect() as connection:
        driver = connection.connection.driver_connection
        try:
            return prepared.run(cast(sqlite3.Connection, driver), parameters)
        except sqlite3.Error:
            return None
