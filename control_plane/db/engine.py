"""Engine creation for SQLite (aiosqlite) and PostgreSQL (asyncpg) from one URL setting, and
the order in which SQLite's writers take their turn.

SQLite has one writer at a time. Left to SQLite, waiting writers poll (its busy handler
sleeps and retries, up to ``busy_timeout``) and the lock goes to whichever retries first:
under a steady load of writers (the node-health poll, the node event streams, requests) one
of them can lose for the whole 5 s and fail with ``database is locked`` although the
database was never stuck. So this process's writers queue for their turn in arrival order
(:func:`writer_turn`, taken by ``control_plane/db/session.py`` around every write
transaction on SQLite) and reach SQLite one at a time; ``busy_timeout`` is then only for
another process on the same file (the CLI). Readers (WAL) never queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Any, Final

import asyncpg
from sqlalchemy import event, exc
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import QueuePool
from sqlalchemy.util import await_

from control_plane.db import json_values
from control_plane.db.faults import unavailable


def async_url(url: str) -> URL:
    """Pick the async driver for a plain ``sqlite://`` or ``postgresql://`` URL."""
    parsed = make_url(url)
    if parsed.drivername in {"sqlite", "sqlite+pysqlite"}:
        return parsed.set(drivername="sqlite+aiosqlite")
    if parsed.drivername in {"postgresql", "postgres", "postgresql+psycopg2"}:
        return parsed.set(drivername="postgresql+asyncpg")
    return parsed


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # SQLAlchemy emits BEGIN itself (see _sqlite_begin); the driver must not.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


READ_ONLY = "stellar_read_only"
# How long a writer waits for its turn before its request is told the database is busy (a
# 503, control_plane/db/faults.py): the turns ahead of it are each one short transaction.
WRITER_TURN_SECONDS: Final = 30.0
# One queue per SQLite database (its engine's pool) and event loop.
_QUEUES: weakref.WeakKeyDictionary[Any, weakref.WeakKeyDictionary[Any, asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)
# The queue whose turn this task holds (a write transaction opened inside one of its own
# does not queue behind itself: SQLite answers it as it always did).
_HOLDING: ContextVar[asyncio.Lock | None] = ContextVar("sqlite_writer_turn", default=None)


def _sqlite_begin(connection: Any) -> None:
    # Writers take the write lock at BEGIN: a transaction that read first and writes later
    # would otherwise fail at once (SQLITE_BUSY) instead of waiting when another writer
    # committed. Readers (WAL) need no lock and never wait for writers.
    if connection.get_execution_options().get(READ_ONLY):
        connection.exec_driver_sql("BEGIN")
    else:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def create_engine(url: str, *, echo: bool = False) -> AsyncEngine:
    """An engine with foreign keys on for SQLite and a health-checked pool for PostgreSQL."""
    target = async_url(url)
    if target.get_backend_name() == "sqlite":
        engine = create_async_engine(target, echo=echo, json_deserializer=json_values.loads)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
        return engine
    engine = create_async_engine(
        target,
        echo=echo,
        pool_size=10,
        max_overflow=10,
        json_deserializer=json_values.loads,
    )
    event.listen(engine.sync_engine.pool, "checkin", _note_checkin)
    event.listen(engine.sync_engine.pool, "checkout", _ping_if_idle)
    return engine


# A pooled PostgreSQL connection back in the pool for this long is asked whether it still
# works before it is handed out (one query). SQLAlchemy's own pre-ping asked every
# time, in three round trips (BEGIN, a query, ROLLBACK): on a busy replica, where every
# connection comes back within milliseconds, a third of a short transaction's round trips.
# A connection used a moment ago that has died since (the server restarted meanwhile) fails
# its statement: the request answers 503 and SQLAlchemy throws away the pool's connections.
PING_AFTER_SECONDS: Final = 2.0
PING: Final = "SELECT 1"  # asyncpg's simple protocol: one round trip
_CHECKED_IN: Final = "stellar_checked_in_at"


def _note_checkin(_dbapi_connection: Any, record: Any) -> None:
    if record is not None:
        record.info[_CHECKED_IN] = time.monotonic()


def _ping_if_idle(_dbapi_connection: Any, record: Any, _proxy: Any) -> None:
    checked_in = record.info.get(_CHECKED_IN)
    if checked_in is None or time.monotonic() - checked_in < PING_AFTER_SECONDS:
        return  # new (it just connected), or in use a moment ago
    try:
        await_(record.driver_connection.execute(PING))
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as err:
        # The connection's or the server's answer; a bug of ours goes on up as it is.
        # The pool tries another connection, and drops those it had before this moment.
        raise exc.InvalidatePoolError(f"a pooled connection no longer answers: {err}") from err


def _queue(bind: Any) -> asyncio.Lock | None:
    """The writers' queue of ``bind`` if it is a SQLite engine that may write, else None."""
    if not isinstance(bind, AsyncEngine) or bind.dialect.name != "sqlite":
        return None
    if bind.get_execution_options().get(READ_ONLY):
        return None
    per_loop = _QUEUES.setdefault(bind.sync_engine.pool, weakref.WeakKeyDictionary())
    return per_loop.setdefault(asyncio.get_running_loop(), asyncio.Lock())


@asynccontextmanager
async def writer_turn(factory: async_sessionmaker[AsyncSession]) -> AsyncIterator[None]:
    """Hold this process's turn to write the SQLite database that ``factory`` writes (in
    arrival order); nothing for PostgreSQL or a read-only factory."""
    queue = _queue(factory.kw.get("bind"))
    if queue is None or _HOLDING.get() is queue:
        yield
        return
    try:
        async with asyncio.timeout(WRITER_TURN_SECONDS):
            await queue.acquire()
    except TimeoutError:
        raise unavailable("the database is busy; try again", 1) from None
    holding = _HOLDING.set(queue)
    try:
        yield
    finally:
        _HOLDING.reset(holding)
        queue.release()


def session_factory(
    engine: AsyncEngine, info: dict[str, Any] | None = None
) -> async_sessionmaker[AsyncSession]:
    """Sessions for work that may write; ``info`` is every session's ``info`` (what domain
    event subscribers need to know about the app, such as where mail links point)."""
    return async_sessionmaker(engine, expire_on_commit=False, info=info)


def read_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions for work that only reads: on SQLite they never queue behind writers."""
    return async_sessionmaker(engine.execution_options(**{READ_ONLY: True}), expire_on_commit=False)


# How often the shutdown counts the lent-out connections again while it waits for them.
_RECOUNT_SECONDS: Final = 0.05


async def connections_returned(engine: AsyncEngine) -> None:
    """Wait until every connection ``engine`` lent out is back in its pool.

    A connection still lent out when the engine is disposed is never closed: it goes back
    to the discarded pool and is garbage-collected open (aiosqlite warns, PostgreSQL sees
    the session vanish). Work that outlives its caller holds one: a shielded unit of work
    finishes after the task that awaited it was cancelled (a node's event stream storing
    what it folded, a console's admission or re-check)."""
    pool = engine.sync_engine.pool
    if not isinstance(pool, QueuePool):
        return  # NullPool and StaticPool lend nothing that dispose could miss
    loop = asyncio.get_running_loop()
    returned = asyncio.Event()

    def on_checkin(*_: Any) -> None:
        # Fired just before the connection re-enters the pool (maybe from the garbage
        # collector, on any thread): the waiter counts again once it runs.
        loop.call_soon_threadsafe(returned.set)

    event.listen(pool, "checkin", on_checkin)
    try:
        while pool.checkedout() > 0:
            returned.clear()
            # A connection beyond the pool's size fires "checkin", is closed (the close may
            # await the driver) and only then stops counting as lent out, with no event of
            # its own: the count is looked at again now and then, not only on an event.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_RECOUNT_SECONDS):
                    await returned.wait()
    finally:
        event.remove(pool, "checkin", on_checkin)
