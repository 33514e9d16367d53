"""SQLite's prepared reads (``control_plane.db.prepared``) give exactly SQLAlchemy's rows.

The authentication reads run this way on the event loop's own connection
(``StatementReader.one_row``); the comparison covers the lists' statements too, so that they
may run this way later.

Every statement the ``StatementReader`` runs on each request (the API key and session reads,
our server list and the Pterodactyl list, for administrators and for users) is run both ways
on a database with owners, sub-users with permissions, keys with scopes and IP lists, servers
with several ports and none, and the rows compared value by value, types included.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from typing import Any

import pytest
import sqlalchemy
from sqlalchemy import Select, select, update

from control_plane.api.compat import client as compat_client
from control_plane.db.engine import session_factory
from control_plane.db.models import ApiKey, Session, User
from control_plane.db.prepared import PreparedRead
from control_plane.db.reader import HELD_WAIT_SECONDS, POSTGRES_HELD
from control_plane.db.session import transaction
from control_plane.keys import ENGINE, STATEMENT_READER
from control_plane.security import api_keys, sessions
from control_plane.services.servers import listing
from tests.support.world import World


def _both_ways(
    url: str, statement: Select[*tuple[Any, ...]], parameters: dict[str, Any]
) -> list[Any]:
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as connection:
            expected = [tuple(row) for row in connection.execute(statement, parameters).all()]
            dbapi = connection.connection.driver_connection
            assert dbapi is not None
            prepared = PreparedRead(statement, engine.dialect)
            got = prepared.run(dbapi, parameters)
            # Once more: the values converted the first time are kept (ids, times).
            again = prepared.run(dbapi, parameters)
    finally:
        engine.dispose()
    for rows in (got, again):
        assert [tuple(row) for row in rows] == expected
        assert [[type(v) for v in row] for row in rows] == [
            [type(v) for v in row] for row in expected
        ]
    return got


async def test_every_read_gives_sqlalchemys_rows(world: World) -> None:
    engine = world.panel.server.app[ENGINE]
    if engine.dialect.name != "sqlite":
        pytest.skip("prepared reads are SQLite's")
    url = engine.url.set(drivername="sqlite+pysqlite").render_as_string()
    alice_key = await world.alice.json(
        "POST",
        "/api/v1/account/api-keys",
        status=201,
        json={"name": "list", "scopes": ["read", "write"], "allowed_ips": ["127.0.0.1/32"]},
    )
    async with transaction(session_factory(world.panel.server.app[ENGINE])) as db:
        await db.execute(
            update(ApiKey)
            .where(ApiKey.id == uuid.UUID(alice_key["id"]))
            .values(
                expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(days=1),
                last_used_at=dt.datetime.now(dt.UTC),
            )
        )
        keys = (await db.execute(select(ApiKey.id, ApiKey.prefix))).all()
        session_rows = (await db.execute(select(Session.id, Session.token_hash))).all()
        users = (await db.execute(select(User.id))).scalars().all()
    assert keys
    assert session_rows
    assert len(users) >= 4
    for key_id, prefix in keys:
        for lookup in (api_keys._KEY_LOOKUP, api_keys._KEY_LOOKUP_LISTING):
            [row] = _both_ways(url, lookup, {"prefix": prefix})
            assert row.id == key_id
            assert isinstance(row.scopes, list)
        _both_ways(url, api_keys._KEY_BY_ID, {"key_id": key_id})
    assert _both_ways(url, api_keys._KEY_LOOKUP, {"prefix": "nothing"}) == []
    for session_id, token_hash in session_rows:
        for lookup in (sessions._SESSION_LOOKUP, sessions._SESSION_LOOKUP_LISTING):
            [row] = _both_ways(url, lookup, {"token_hash": token_hash})
            assert row.id == session_id
        _both_ways(url, sessions._SESSION_BY_ID, {"session_id": session_id})
    statements = [listing._ADMIN_PAGE, listing._USER_PAGE, *compat_client._STATEMENTS]
    listed = 0
    for statement in statements:
        for user_id in [*users, uuid.uuid4()]:
            for limit, offset in ((50, 0), (1, 1), (5, 100)):
                parameters = {"caller_id": user_id, "limit": limit, "offset": offset}
                listed += len(_both_ways(url, statement, parameters))
    assert listed > 0


async def test_the_reader_runs_them_prepared_and_sees_a_revocation_at_once(world: World) -> None:
    reader = world.panel.server.app[STATEMENT_READER]
    created = await world.alice.json(
        "POST", "/api/v1/account/api-keys", status=201, json={"name": "bot", "scopes": ["read"]}
    )
    bot = await world.panel.browser()
    bot.api_key = created["key"]
    await bot.json("GET", "/api/v1/servers")
    await bot.json("GET", "/api/v1/servers")
    assert reader._prepared_form(api_keys._KEY_LOOKUP_LISTING) is not None
    # Only statements are kept: the next read sees the revocation.
    await world.alice.json("DELETE", f"/api/v1/account/api-keys/{created['id']}", status=204)
    response = await bot.request("GET", "/api/v1/servers")
    assert response.status == 401


async def test_the_authentication_reads_on_the_driver_are_sqlalchemys(world: World) -> None:
    """``one_row`` (SQLite on the loop's connection, PostgreSQL on the asyncpg connection)
    against ``rows`` (SQLAlchemy), value by value and type by type, on both databases."""
    reader = world.panel.server.app[STATEMENT_READER]
    await world.alice.json(
        "POST",
        "/api/v1/account/api-keys",
        status=201,
        json={"name": "ips", "scopes": ["read", "write"], "allowed_ips": ["127.0.0.1/32"]},
    )
    async with transaction(session_factory(world.panel.server.app[ENGINE])) as db:
        await db.execute(update(ApiKey).values(last_used_at=dt.datetime.now(dt.UTC)))
        keys = (await db.execute(select(ApiKey.id, ApiKey.prefix))).all()
        session_rows = (await db.execute(select(Session.id, Session.token_hash))).all()
    reads: list[tuple[Any, dict[str, Any]]] = []
    for key_id, prefix in keys:
        reads += [(api_keys._KEY_LOOKUP, {"prefix": prefix})]
        reads += [(api_keys._KEY_LOOKUP_LISTING, {"prefix": prefix})]
        reads += [(api_keys._KEY_BY_ID, {"key_id": key_id})]
    for session_id, token_hash in session_rows:
        reads += [(sessions._SESSION_LOOKUP, {"token_hash": token_hash})]
        reads += [(sessions._SESSION_LOOKUP_LISTING, {"token_hash": token_hash})]
        reads += [(sessions._SESSION_BY_ID, {"session_id": session_id})]
    reads += [(api_keys._KEY_LOOKUP, {"prefix": "nothing"})]
    listing_reads = (api_keys._KEY_LOOKUP_LISTING, sessions._SESSION_LOOKUP_LISTING)
    for statement, parameters in reads:
        expected = [tuple(row) for row in await reader.rows(statement, parameters)]
        got = [tuple(row) for row in await reader.one_row(statement, parameters)]
        assert got == expected
        assert [[type(v) for v in row] for row in got] == [
            [type(v) for v in row] for row in expected
        ]
        for row in await reader.one_row(statement, parameters):
            if statement in listing_reads:
                assert row.listing_version is not None
                assert row.user_listing_version is not None
            assert isinstance(row.email, str)
    assert reader._prepared_form(api_keys._KEY_LOOKUP) is not None
    assert reader._prepared_form(api_keys._KEY_LOOKUP_LISTING) is not None


async def test_the_list_pages_on_the_driver_are_sqlalchemys(world: World) -> None:
    """``fixed_rows`` (SQLite in the reader threads, PostgreSQL on the asyncpg connection)
    against ``rows`` (SQLAlchemy) for every list page statement, on both databases: owners,
    sub-users with permissions, administrators, someone with nothing, past the end."""
    reader = world.panel.server.app[STATEMENT_READER]
    async with transaction(session_factory(world.panel.server.app[ENGINE])) as db:
        users = list((await db.scalars(select(User.id))).all())
    statements = [listing._ADMIN_PAGE, listing._USER_PAGE, *compat_client._STATEMENTS]
    listed = 0
    for statement in statements:
        assert reader._prepared_form(statement) is not None
        for user_id in [*users, uuid.uuid4()]:
            for limit, offset in ((50, 0), (1, 1), (5, 100)):
                parameters = {"caller_id": user_id, "limit": limit, "offset": offset}
                expected = [tuple(row) for row in await reader.rows(statement, parameters)]
                got = [tuple(row) for row in await reader.fixed_rows(statement, parameters)]
                assert got == expected
                assert [[type(v) for v in row] for row in got] == [
                    [type(v) for v in row] for row in expected
                ]
                listed += len(got)
    for statement in (listing._ADMIN_SEARCH, listing._USER_SEARCH):
        for user_id in users:
            parameters = {"caller_id": user_id, "limit": 50, "offset": 0, "name_pattern": "%a%"}
            expected = [tuple(row) for row in await reader.rows(statement, parameters)]
            assert [
                tuple(row) for row in await reader.fixed_rows(statement, parameters)
            ] == expected
    assert listed > 0


async def test_reads_beyond_the_kept_connections_wait_for_one(world: World) -> None:
    """PostgreSQL: more compiled reads at once than the reader keeps connections for take
    turns on the kept ones (no connection taken from the pool for a single statement, which
    cost half as much CPU again per list); a read cancelled while it waits, or while it
    reads, leaves the others their connections."""
    reader = world.panel.server.app[STATEMENT_READER]
    if world.panel.server.app[ENGINE].dialect.name == "sqlite":
        pytest.skip("the kept connections are PostgreSQL's")
    async with transaction(session_factory(world.panel.server.app[ENGINE])) as db:
        prefixes = list((await db.scalars(select(ApiKey.prefix))).all())
    assert prefixes
    checkouts = 0

    def counted(*_: Any) -> None:
        nonlocal checkouts
        checkouts += 1

    sqlalchemy.event.listen(reader.pool, "checkout", counted)
    try:

        async def read(prefix: str) -> str:
            rows = await reader.one_row(api_keys._KEY_LOOKUP, {"prefix": prefix})
            return str(rows[0].id)

        expected = [await read(prefix) for prefix in prefixes]
        for _ in range(3):
            many = [prefixes[i % len(prefixes)] for i in range(5 * POSTGRES_HELD)]
            got = await asyncio.gather(*(read(prefix) for prefix in many))
            assert got == [expected[i % len(prefixes)] for i in range(len(many))]
        assert checkouts <= POSTGRES_HELD
        assert reader._holding == len(reader._held) <= POSTGRES_HELD
        # Cancelled at every point: waiting for a connection, reading, or just handed one.
        for delay in (0, 0.0005, 0.001, 0.002, 0.005):
            tasks = [asyncio.ensure_future(read(prefixes[0])) for _ in range(3 * POSTGRES_HELD)]
            await asyncio.sleep(delay)
            for task in tasks[::2]:
                task.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            failed = [r for r in results if isinstance(r, BaseException)]
            assert all(isinstance(r, asyncio.CancelledError) for r in failed), failed
            finished = [r for r in results if not isinstance(r, BaseException)]
            assert finished
            assert all(r == expected[0] for r in finished)
            await asyncio.gather(*reader._dropping)
            assert reader._holding == len(reader._held) <= POSTGRES_HELD
            assert not reader._waiting
        assert await read(prefixes[0]) == expected[0]
        # Every kept connection busy for longer than a read waits: it goes through the pool.
        busy = [await reader._take_held() for _ in range(POSTGRES_HELD)]
        started = time.monotonic()
        assert await read(prefixes[0]) == expected[0]
        assert time.monotonic() - started >= HELD_WAIT_SECONDS * 0.9
        assert not reader._waiting
        for held in busy:
            assert held is not None
            reader._give_back(held)
        assert reader._holding == len(reader._held) == POSTGRES_HELD
    finally:
        sqlalchemy.event.remove(reader.pool, "checkout", counted)
