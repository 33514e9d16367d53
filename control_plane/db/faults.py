"""What a failure of the database means for the client, decided in one place.

A request whose database is down, full or busy gets a clear answer instead of a 500:

- PostgreSQL unreachable (refused, reset, its socket or host name not found, gone mid-query,
  pool exhausted) or SQLite's file unreadable: ``503 database_unavailable`` with
  ``Retry-After``;
- SQLite busy beyond its wait (``database is locked``): the same 503, sooner to retry;
- SQLite's disk full: ``507 insufficient_storage``. SQLite rolls the transaction back, so
  nothing is half written; the log names the database file.
- A row the request read and then changed was deleted by another transaction meanwhile
  (SQLAlchemy's ``StaleDataError``): ``409 conflict``, rolled back, to be reloaded.
- A value that must be unique (an address, an external id) was checked free and then taken by
  another transaction before this one committed (a unique constraint fails): the same 409.
  Other constraint failures (a foreign key, a check) stay 500s: they are bugs of ours.

The engine recovers by itself: PostgreSQL's pool checks connections before use
(``pool_pre_ping``), the reads' own pool runs a read once more on a new connection when it
found its connection dead (``control_plane.db.reader``), and nothing here is cached.
"""

from __future__ import annotations

import errno
import socket
import sqlite3
from collections.abc import Iterator
from typing import Final

import asyncpg.exceptions
import sqlalchemy.exc
import sqlalchemy.orm.exc

from shared.errors import ApiError, Conflict, InsufficientStorage

RETRY_SECONDS: Final = 5
_LOCKED_RETRY_SECONDS: Final = 1
# Where a bare OSError must have come from to be the database's (asyncpg connects with its
# own sockets; SQLAlchemy does not always wrap what a driver raises while connecting).
_DATABASE_MODULES: Final = ("sqlalchemy.", "asyncpg.", "aiosqlite.")
# connect() finding no way to the host.
_NO_ROUTE: Final = frozenset(
    {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN, errno.ENETDOWN}
)
# PostgreSQL going away (class 08), shutting down or starting (57P0x), out of connections.
_ASYNCPG_UNAVAILABLE: Final = (
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.TooManyConnectionsError,
)


class DatabaseUnavailable(ApiError):
    """The database cannot be reached or is busy; nothing was done."""

    status = 503
    code = "database_unavailable"


def _chain(err: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        orig = getattr(current, "orig", None)
        current = (
            orig if isinstance(orig, BaseException) else current.__cause__ or current.__context__
        )


def _raised_by_database(err: BaseException) -> bool:
    traceback = err.__traceback__
    while traceback is not None:
        module = traceback.tb_frame.f_globals.get("__name__", "")
        if isinstance(module, str) and module.startswith(_DATABASE_MODULES):
            return True
        traceback = traceback.tb_next
    return False


def _unreachable(err: BaseException) -> bool:
    """Whether ``err`` says the database's address cannot be reached: refused, reset or timed
    out, a host name that does not resolve, no route, or a Unix socket that is not there
    (stopping PostgreSQL removes it). Other OSErrors — out of file descriptors, a certificate
    that does not verify, a file of ours missing — stay errors (500, with a traceback)."""
    if isinstance(err, (ConnectionError, TimeoutError, socket.gaierror)):
        return True
    if isinstance(err, FileNotFoundError):
        # connect() on a socket path names no file; opening a file (a certificate) does.
        return err.filename is None
    return isinstance(err, OSError) and err.errno in _NO_ROUTE


def _unique_violation(err: BaseException) -> bool:
    if isinstance(err, asyncpg.exceptions.UniqueViolationError):
        return True
    return isinstance(err, sqlite3.IntegrityError) and str(err).startswith("UNIQUE constraint")


def unavailable(message: str, retry: int = RETRY_SECONDS) -> DatabaseUnavailable:
    return DatabaseUnavailable(message, headers={"Retry-After": str(retry)})


def as_api_error(err: BaseException) -> ApiError | None:
    """The answer for ``err`` if it is the database failing, else None (a bug: a 500)."""
    links = list(_chain(err))
    if any(isinstance(link, sqlalchemy.orm.exc.StaleDataError) for link in links):
        return Conflict(
            "this was changed or deleted by another request at the same moment; nothing was"
            " saved: reload and try again"
        )
    if any(_unique_violation(link) for link in links):
        return Conflict(
            "another request took this value at the same moment (it must be unique); nothing "
            "was saved: reload and try again"
        )
    # A statement cancelled for taking too long is a slow query of ours, not an outage.
    if any(isinstance(link, asyncpg.exceptions.QueryCanceledError) for link in links):
        return None
    for link in links:
        if isinstance(link, sqlite3.OperationalError):
            text = str(link).lower()
            if "database or disk is full" in text:
                return InsufficientStorage(
                    "the control plane's database disk is full; nothing was written"
                )
            if "locked" in text or "busy" in text:
                return unavailable("the database is busy; try again", _LOCKED_RETRY_SECONDS)
            if "unable to open" in text or "disk i/o error" in text:
                return unavailable("the database cannot be read; try again later")
        if isinstance(link, sqlalchemy.exc.TimeoutError):
            return unavailable("the database has no free connection; try again")
        # (SQLite's own errors are told apart by their text, above, once the chain reaches them.)
        wrapped = (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError)
        if isinstance(link, wrapped) and not isinstance(link.orig, sqlite3.Error):
            return unavailable("the database is unavailable; try again later")
        if isinstance(link, sqlalchemy.exc.DBAPIError) and link.connection_invalidated:
            return unavailable("the database connection was lost; try again")
        if _unreachable(link) and _raised_by_database(link):
            return unavailable("the database is unavailable; try again later")
        if isinstance(link, _ASYNCPG_UNAVAILABLE):
            return unavailable("the database is unavailable; try again later")
    return None
