"""PostgreSQL's pooled connections: one that sat in the pool is asked whether it still works
before it is handed out, and a dead one is replaced without an error; one handed back a
moment ago is used as it is (control_plane/db/engine.py: SQLAlchemy's pre-ping asked every
time, in three round trips). Against a real PostgreSQL, whose sessions are ended from
outside as a restart or an administrator would."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest
import sqlalchemy.exc
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from control_plane.db import faults
from control_plane.db.engine import PING, PING_AFTER_SECONDS, create_engine
from tests.conftest import _create_postgres_database, _drop_postgres_database


@pytest.fixture
async def postgres() -> AsyncIterator[tuple[AsyncEngine, asyncpg.Connection]]:
    url = await _create_postgres_database()
    engine = create_engine(url)
    admin = await asyncpg.connect(make_url(url).render_as_string(hide_password=False))
    try:
        yield engine, admin
    finally:
        await admin.close()
        await engine.dispose()
        await _drop_postgres_database(url)


async def backend(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return int(await connection.scalar(text("SELECT pg_backend_pid()")) or 0)


async def test_an_idle_connection_that_died_is_replaced_without_an_error(
    postgres: tuple[AsyncEngine, asyncpg.Connection],
) -> None:
    engine, admin = postgres
    first = await backend(engine)
    await admin.execute("SELECT pg_terminate_backend($1, 5000)", first)
    await asyncio.sleep(PING_AFTER_SECONDS + 0.2)
    second = await backend(engine)  # no error: the ping found it dead
    assert second != first


async def test_a_connection_handed_back_a_moment_ago_is_not_asked_again(
    postgres: tuple[AsyncEngine, asyncpg.Connection],
) -> None:
    engine, admin = postgres
    queries: list[str] = []
    async with engine.connect() as connection:
        first = await connection.scalar(text("SELECT pg_backend_pid()"))
        driver = (await connection.get_raw_connection()).driver_connection
    assert isinstance(driver, asyncpg.Connection), driver
    driver.add_query_logger(lambda record: queries.append(record.query))
    for _ in range(20):
        assert await backend(engine) == first  # the same connection each time, not asked
    assert PING not in queries
    await asyncio.sleep(PING_AFTER_SECONDS + 0.2)
    assert await backend(engine) == first
    assert queries.count(PING) == 1, "asked once after sitting in the pool"

    # Died while hot: its next statement fails once, answered as the database being away
    # (503), and the pool starts over.
    await admin.execute("SELECT pg_terminate_backend($1, 5000)", first)
    with pytest.raises(sqlalchemy.exc.DBAPIError) as failed:
        await backend(engine)
    answer = faults.as_api_error(failed.value)
    assert answer is not None
    assert answer.status == 503
    assert await backend(engine) != first
