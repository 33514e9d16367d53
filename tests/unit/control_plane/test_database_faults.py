"""Which database failures are the client's answer (503, 507) and which stay bugs (500)."""

from __future__ import annotations

import errno
import socket
import sqlite3
import ssl
from pathlib import Path

import pytest
import sqlalchemy
import sqlalchemy.exc
import sqlalchemy.orm

from control_plane.db.faults import as_api_error


def raised(call: object) -> BaseException:
    try:
        call()  # type: ignore[operator]
    except BaseException as err:
        return err
    raise AssertionError("nothing was raised")


def test_a_locked_sqlite_database_is_503_soon_to_retry(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")
    engine = sqlalchemy.create_engine(f"sqlite:///{path}", connect_args={"timeout": 0})
    with engine.connect() as connection:
        err = raised(lambda: connection.execute(sqlalchemy.text("INSERT INTO t VALUES (1)")))
    answer = as_api_error(err)
    assert answer is not None
    assert (answer.status, answer.code, answer.headers) == (
        503, "database_unavailable", {"Retry-After": "1"},
    )  # fmt: skip
    holder.close()


def test_mistakes_in_statements_stay_errors_of_ours(tmp_path: Path) -> None:
    engine = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    with engine.connect() as connection:
        err = raised(lambda: connection.execute(sqlalchemy.text("SELECT * FROM missing")))
    assert as_api_error(err) is None
    assert as_api_error(ValueError("nothing to do with a database")) is None
    # A refused connection that did not come from the database layer is not the database's.
    assert as_api_error(ConnectionRefusedError("somewhere else")) is None
    assert as_api_error(FileNotFoundError(2, "No such file or directory")) is None
    missing = raised(lambda: open(Path("/nonexistent/stellar")))  # noqa: SIM115
    assert isinstance(missing, FileNotFoundError)
    assert as_api_error(missing) is None


def test_a_row_deleted_while_a_request_changes_it_is_409(tmp_path: Path) -> None:
    """Two requests at once: one deletes what the other read and is now saving."""

    class Base(sqlalchemy.orm.DeclarativeBase):
        pass

    class Thing(Base):
        __tablename__ = "things"
        id: sqlalchemy.orm.Mapped[int] = sqlalchemy.orm.mapped_column(primary_key=True)
        name: sqlalchemy.orm.Mapped[str]

    engine = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    Base.metadata.create_all(engine)
    with sqlalchemy.orm.Session(engine) as setup:
        setup.add(Thing(id=1, name="old"))
        setup.commit()
    with sqlalchemy.orm.Session(engine) as editing:
        thing = editing.get(Thing, 1)
        assert thing is not None
        with sqlalchemy.orm.Session(engine) as deleting:
            deleting.execute(sqlalchemy.delete(Thing))
            deleting.commit()
        thing.name = "new"
        err = raised(editing.flush)
    answer = as_api_error(err)
    assert answer is not None
    assert (answer.status, answer.code) == (409, "conflict")
    assert "reload and try again" in answer.message


def raised_in_driver(err: BaseException) -> BaseException:
    """``err`` raised by code of the driver's package (as asyncpg raises while connecting)."""
    namespace = {"__name__": "asyncpg.connect_utils", "err": err}
    exec("def connect():\n    raise err\n", namespace)
    return raised(namespace["connect"])


@pytest.mark.parametrize(
    "err",
    [
        ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"),
        ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"),
        TimeoutError(),
        socket.gaierror(socket.EAI_NONAME, "Name or service not known"),
        FileNotFoundError(errno.ENOENT, "No such file or directory"),  # a socket path
        OSError(errno.EHOSTUNREACH, "No route to host"),
        OSError(errno.ENETUNREACH, "Network is unreachable"),
    ],
    ids=repr,
)
def test_a_database_address_that_cannot_be_reached_is_503(err: OSError) -> None:
    answer = as_api_error(raised_in_driver(err))
    assert answer is not None
    assert (answer.status, answer.code) == (503, "database_unavailable")


@pytest.mark.parametrize(
    "err",
    [
        OSError(errno.EMFILE, "Too many open files"),
        FileNotFoundError(errno.ENOENT, "No such file or directory", "/etc/ssl/root.crt"),
        ssl.SSLCertVerificationError("certificate verify failed"),
        PermissionError(errno.EACCES, "Permission denied"),
    ],
    ids=repr,
)
def test_other_os_errors_in_the_driver_stay_errors_of_ours(err: OSError) -> None:
    """A leak of file descriptors, a certificate that does not verify, a file missing: a
    fault to fix (500, with its traceback), not an outage to wait out."""
    assert as_api_error(raised_in_driver(err)) is None


def test_a_pool_without_free_connections_is_503() -> None:
    answer = as_api_error(sqlalchemy.exc.TimeoutError("QueuePool limit reached"))
    assert answer is not None
    assert answer.status == 503


def test_a_cancelled_statement_is_a_slow_query_of_ours_not_an_outage() -> None:
    import asyncpg.exceptions

    cancelled = asyncpg.exceptions.QueryCanceledError("canceling statement: statement timeout")
    wrapped = sqlalchemy.exc.OperationalError("SELECT pg_sleep(10)", {}, cancelled)
    assert as_api_error(wrapped) is None


def test_a_unique_value_taken_at_the_same_moment_is_409_other_constraints_stay_500(
    tmp_path: Path,
) -> None:
    """Checked free, then taken by another transaction before this one committed."""
    engine = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    with engine.begin() as connection:
        connection.execute(
            sqlalchemy.text("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT UNIQUE)")
        )
        connection.execute(sqlalchemy.text("CREATE TABLE keys (owner INTEGER NOT NULL)"))
        connection.execute(sqlalchemy.text("INSERT INTO users (email) VALUES ('a@example.org')"))
    with engine.connect() as connection:
        taken = raised(
            lambda: connection.execute(
                sqlalchemy.text("INSERT INTO users (email) VALUES ('a@example.org')")
            )
        )
        missing = raised(
            lambda: connection.execute(sqlalchemy.text("INSERT INTO keys (owner) VALUES (NULL)"))
        )
    answer = as_api_error(taken)
    assert answer is not None
    assert (answer.status, answer.code) == (409, "conflict")
    assert "must be unique" in answer.message
    assert as_api_error(missing) is None
