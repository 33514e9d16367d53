"""Kept server lists (api/list_cache.py) never show a change late, on either database.

Every kind of write a list can show is made, and after each the answers each caller gets
(possibly kept) are compared with the answers read anew with the cache emptied: equal, and
different from before for someone (so the change was one a list shows). The triggers are
checked against every column the cached statements read. Revocations are refused on the
very next request even though the caller's page is kept, and a second replica on the same
database sees a change made through the first at once.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from pytest_aiohttp import AiohttpClient, AiohttpServer
from sqlalchemy import Column, Table, delete, select, text, update
from sqlalchemy.sql import visitors

from control_plane.api.compat import client as compat_client
from control_plane.app import create_app
from control_plane.db.engine import session_factory
from control_plane.db.models import Allocation, Blueprint, Node, Server, Subuser, User
from control_plane.db.session import transaction
from control_plane.keys import ENGINE, LIST_CACHE
from control_plane.services.servers import listing
from control_plane.settings import ControlPlaneSettings
from tests.support.panel import Browser, Panel
from tests.support.world import World

LISTS = ("/api/v1/servers", "/api/client")
Change = Callable[[], Awaitable[None]]


async def _key(browser: Browser, kind: str = "stellar") -> str:
    body = await browser.json(
        "POST",
        "/api/v1/account/api-keys",
        status=201,
        json={"name": f"list {kind}", "scopes": ["read"], "kind": kind},
    )
    return str(body["key"])


async def _observers(world: World) -> dict[str, Browser]:
    """Callers of every kind: administrator, owners, sub-users, sessions, keys."""
    panel = world.panel
    dave = await panel.browser()
    await dave.login("dave@example.org")
    alice_key = await panel.browser()
    alice_key.api_key = await _key(world.alice)
    admin_key = await panel.browser()
    admin_key.api_key = (
        await world.admin.json(
            "POST",
            "/api/v1/account/api-keys",
            status=201,
            json={"name": "admin list", "scopes": ["read", "admin"]},
        )
    )["key"]
    return {
        "admin": world.admin,
        "admin key": admin_key,
        "alice": world.alice,
        "alice key": alice_key,
        "bob": world.bob,
        "carol": world.carol,
        "dave": dave,
    }


async def _answers(observers: dict[str, Browser]) -> dict[tuple[str, str], Any]:
    """Each observer's status and body on each list."""
    answers = {}
    for name, browser in observers.items():
        for path in LISTS:
            response = await browser.request("GET", path)
            answers[name, path] = (response.status, await response.json())
    return answers


async def _db_change(panel: Panel, *statements: Any) -> None:
    async with transaction(session_factory(panel.server.app[ENGINE])) as db:
        for statement in statements:
            await db.execute(statement)


def _changes(world: World) -> list[tuple[str, Change]]:
    """Each kind of write a list shows: through the API where a route makes it, else as
    the services write it (a node's reported state, an owner moved...)."""
    panel, ids = world.panel, world.ids
    alice_server = uuid.UUID(ids["alice_server"])
    bob_server = uuid.UUID(ids["bob_server"])

    def db(*statements: Any) -> Change:
        return lambda: _db_change(panel, *statements)

    async def rename() -> None:
        await world.alice.json(
            "PATCH", f"/api/v1/servers/{alice_server}", json={"name": "renamed by alice"}
        )

    async def add_subuser() -> None:
        await world.alice.json(
            "POST",
            f"/api/v1/servers/{alice_server}/users",
            status=201,
            json={"email": "bob@example.org", "permissions": ["console.read"]},
        )

    async def change_permissions() -> None:
        await world.alice.json(
            "PATCH",
            f"/api/v1/servers/{alice_server}/users/{ids['carol_subuser']}",
            json={"permissions": ["files.read"]},
        )

    async def remove_subuser() -> None:
        await world.alice.json(
            "DELETE", f"/api/v1/servers/{alice_server}/users/{ids['carol_subuser']}", status=204
        )

    async def new_server() -> None:
        async with transaction(session_factory(panel.server.app[ENGINE])) as session:
            source = await session.get(Server, bob_server)
            assert source is not None
            session.add(
                Server(
                    name="bob's second",
                    owner_id=source.owner_id,
                    node_id=source.node_id,
                    blueprint_id=source.blueprint_id,
                    image=source.image,
                    memory_mib=256,
                    cpu_percent=50,
                    disk_mib=512,
                )
            )

    server = update(Server).where(Server.id == alice_server)
    return [
        ("rename (API)", rename),
        ("state reported by the node", db(server.values(state="running"))),
        ("suspended", db(server.values(suspended=True))),
        ("unsuspended", db(server.values(suspended=False))),
        ("limits", db(server.values(memory_mib=4096, cpu_percent=300))),
        ("image", db(server.values(image="example/other:2"))),
        ("description (Pterodactyl's list)", db(server.values(description="now described"))),
        ("sub-user added (API)", add_subuser),
        ("sub-user's permissions (API)", change_permissions),
        ("sub-user removed (API)", remove_subuser),
        (
            "allocation given",
            db(
                update(Allocation)
                .where(Allocation.server_id.is_(None), Allocation.port == 30009)
                .values(server_id=alice_server)
            ),
        ),
        (
            "allocation taken back",
            db(update(Allocation).where(Allocation.port == 30009).values(server_id=None)),
        ),
        (
            "owner changed",
            db(
                update(Server)
                .where(Server.id == bob_server)
                .values(owner_id=uuid.UUID(ids["alice_user"]))
            ),
        ),
        ("node renamed (Pterodactyl's list)", db(update(Node).values(name="renamed node"))),
        (
            "blueprint's startup (Pterodactyl's list)",
            db(update(Blueprint).values(startup="./run --changed")),
        ),
        ("server created", new_server),
        (
            "user removed, their sub-user rows by cascade",
            db(delete(User).where(User.id == uuid.UUID(ids["dave_user"]))),
        ),
        ("server deleted", db(delete(Server).where(Server.name == "bob's second"))),
    ]


async def test_every_change_a_list_shows_is_seen_at_once(world: World) -> None:
    cache = world.panel.server.app[LIST_CACHE]
    observers = await _observers(world)
    for label, change in _changes(world):
        before = await _answers(observers)
        hits = cache.hits
        assert await _answers(observers) == before
        kept_before = sum(1 for status, _ in before.values() if status == 200)
        assert cache.hits - hits == kept_before, f"{label}: the lists were not kept"
        await change()
        kept = await _answers(observers)
        cache.clear()
        anew = await _answers(observers)
        assert kept == anew, f"{label}: a kept list outlived the change"
        assert kept != before, f"{label}: no list shows this change"


async def test_node_health_writes_keep_the_lists(world: World) -> None:
    """A node's health columns change every few seconds and no list shows them: they do not
    change the version (the triggers watch a node's name only)."""
    cache = world.panel.server.app[LIST_CACHE]
    await world.alice.json("GET", "/api/v1/servers")
    await _db_change(
        world.panel, update(Node).values(sftp_acked_version=Node.sftp_acked_version + 1)
    )
    hits = cache.hits
    await world.alice.json("GET", "/api/v1/servers")
    assert cache.hits == hits + 1


async def test_revocations_are_refused_although_the_page_is_kept(world: World) -> None:
    panel = world.panel
    keyed = await panel.browser()
    keyed.api_key = await _key(world.alice)
    client = await panel.browser()
    client.api_key = await _key(world.alice, "client")
    for browser, path in ((keyed, "/api/v1/servers"), (client, "/api/client")):
        await browser.json("GET", path)
        await browser.json("GET", path)  # kept now
    keys = await world.alice.json("GET", "/api/v1/account/api-keys")
    for key in keys["data"]:
        await world.alice.json("DELETE", f"/api/v1/account/api-keys/{key['id']}", status=204)
    await keyed.json("GET", "/api/v1/servers", status=401)
    await client.json("GET", "/api/client", status=401)
    # An ended session, and a user disabled by an administrator.
    await world.carol.json("GET", "/api/v1/servers")
    await world.carol.json("POST", "/api/v1/auth/logout", status=204)
    await world.carol.json("GET", "/api/v1/servers", status=401)
    await world.bob.json("GET", "/api/v1/servers")
    await _db_change(
        panel, update(User).where(User.email == "bob@example.org").values(disabled=True)
    )
    await world.bob.json("GET", "/api/v1/servers", status=401)


async def test_an_administrators_page_is_not_a_users(world: World) -> None:
    """The same user's page as an administrator and, once no longer one, as a user."""
    everything = await world.admin.json("GET", "/api/v1/servers")
    assert everything["meta"]["total"] >= 2
    await _db_change(
        world.panel, update(User).where(User.email == "admin@example.org").values(is_admin=False)
    )
    assert (await world.admin.json("GET", "/api/v1/servers"))["meta"]["total"] == 0


async def test_another_replica_sees_a_change_at_once(
    world: World,
    settings: ControlPlaneSettings,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
) -> None:
    other = Panel(await aiohttp_server(create_app(settings, background_jobs=False)), aiohttp_client)
    here, there = await world.panel.browser(), await other.browser()
    here.api_key = there.api_key = await _key(world.carol)
    for browser in (here, there, here, there):
        listed = await browser.json("GET", "/api/v1/servers")
        assert [s["id"] for s in listed["data"]] == [world.ids["alice_server"]]
    await here.json("GET", "/api/v1/servers")
    assert other.server.app[LIST_CACHE].hits >= 1
    # Carol's access is removed through the first replica; the second answers without it.
    await world.alice.json(
        "DELETE",
        f"/api/v1/servers/{world.ids['alice_server']}/users/{world.ids['carol_subuser']}",
        status=204,
    )
    assert (await there.json("GET", "/api/v1/servers"))["data"] == []
    # And a suspension written by neither replica (the CLI, another process).
    await there.json("GET", "/api/client")
    await _db_change(world.panel, update(Server).values(suspended=True))
    for page in ((await there.json("GET", "/api/client")), (await here.json("GET", "/api/client"))):
        assert all(s["attributes"]["is_suspended"] for s in page["data"])


def _read_columns() -> set[tuple[str, str]]:
    """(table, column) of every column the kept lists' statements read."""
    statements = [
        *listing.page_statements(listing.PageColumns()),
        *compat_client._STATEMENTS,
    ]
    found: set[tuple[str, str]] = set()
    for statement in statements:
        for element in visitors.iterate(statement):
            if isinstance(element, Column) and isinstance(element.table, Table):
                found.add((element.table.name, element.name))
    return found


async def _triggers(panel: Panel, function: str, statement: str) -> set[tuple[str, str, str]]:
    """(table, event, column or "*") of every trigger that runs ``function`` (PostgreSQL) or
    whose body has ``statement`` (SQLite)."""
    found: set[tuple[str, str, str]] = set()
    async with panel.server.app[ENGINE].connect() as connection:
        if connection.dialect.name == "sqlite":
            rows = await connection.execute(
                text("SELECT tbl_name, sql FROM sqlite_master WHERE type = 'trigger'")
            )
            for table, sql in rows:
                head, body = sql.split(" BEGIN ")
                if statement not in body:
                    continue
                for event in ("INSERT", "DELETE"):
                    if f"AFTER {event} ON" in head:
                        found.add((table, event, "*"))
                if "AFTER UPDATE OF " in head:
                    named = head.split("AFTER UPDATE OF ")[1].split(" ON ")[0]
                    found |= {(table, "UPDATE", c.strip()) for c in named.split(",")}
                elif "AFTER UPDATE ON" in head:
                    found.add((table, "UPDATE", "*"))
            return found
        rows = await connection.execute(
            text(
                "SELECT event_object_table, event_manipulation FROM information_schema.triggers"
                " WHERE action_statement LIKE :function"
            ),
            {"function": f"%{function}%"},
        )
        limited = await connection.execute(
            text(
                "SELECT event_object_table, event_object_column"
                " FROM information_schema.triggered_update_columns"
            )
        )
        columns: dict[str, set[str]] = {}
        for table, column in limited:
            columns.setdefault(table, set()).add(column)
        for table, event in rows:
            if event == "UPDATE" and table in columns:
                found |= {(table, "UPDATE", c) for c in columns[table]}
            else:
                found.add((table, event, "*"))
    return found


def _assert_watched(
    triggers: set[tuple[str, str, str]], read: set[tuple[str, str]], what: str
) -> None:
    for table, column in read:
        for event in ("INSERT", "DELETE"):
            assert (table, event, "*") in triggers, f"{what}: {event} on {table} is not watched"
        assert (table, "UPDATE", "*") in triggers or (table, "UPDATE", column) in triggers, (
            f"{what}: an update of {table}.{column} is not watched"
        )


# The tables whose rows carry their own version (migration 0031), summed into a user's; an
# allocation's write renews its server's.
ROW_VERSIONED = ("servers", "subusers")


async def test_the_triggers_watch_every_column_a_kept_list_reads(panel: Panel) -> None:
    """Everyone's version (administrators' lists) changes with every column any list reads;
    a user's with every row of the tables that carry a version of their own, and with every
    other column (nodes' and blueprints') through the catalogue."""
    read = {(table, column) for table, column in _read_columns() if table != "listing_version"}
    assert {table for table, _ in read} >= {"servers", "allocations", "subusers", "nodes"}
    everyone = await _triggers(
        panel, "listing_version_bump", "UPDATE listing_version SET version = random() WHERE id = 1;"
    )
    _assert_watched(everyone, read, "everyone's version")
    catalogue = await _triggers(
        panel,
        "listing_catalogue_bump",
        "UPDATE listing_version SET version = (random() & 1099511627775) WHERE id = 2;",
    )
    shared = {
        (table, column)
        for table, column in read
        if table not in ROW_VERSIONED and table != "allocations"
    }
    assert {table for table, _ in shared} >= {"nodes", "blueprints"}
    _assert_watched(catalogue, shared, "the catalogue")
    ports = {(table, column) for table, column in read if table == "allocations"}
    _assert_watched(
        await _triggers(panel, "list_allocation_server_version", "UPDATE servers SET list_version"),
        ports,
        "allocations",
    )


async def test_every_write_of_a_listed_row_gives_it_a_new_version(world: World) -> None:
    """Inserts and updates, one row or many in one statement, by the ORM or plain SQL: each
    row's ``list_version`` is new (a user's version sums them), and a write of an
    allocation renews its server's, and only its server's."""
    panel, ids = world.panel, world.ids
    tables: dict[str, type[Server] | type[Subuser]] = {"servers": Server, "subusers": Subuser}
    assert set(tables) == set(ROW_VERSIONED)

    async def versions() -> dict[tuple[str, Any], int]:
        found: dict[tuple[str, Any], int] = {}
        async with transaction(session_factory(panel.server.app[ENGINE])) as db:
            for name, model in tables.items():
                rows = await db.execute(select(model.id, model.list_version))
                found |= {(name, row_id): version for row_id, version in rows}
        return found

    before = await versions()
    assert len(set(before.values())) == len(before), "two rows share a version"
    alice_server = ("servers", uuid.UUID(ids["alice_server"]))
    for allocation in (
        update(Allocation)
        .where(Allocation.server_id.is_(None), Allocation.port == 30009)
        .values(server_id=alice_server[1]),
        update(Allocation).where(Allocation.port == 30009).values(compat_id=Allocation.compat_id),
        update(Allocation).where(Allocation.port == 30009).values(server_id=None),
    ):
        await _db_change(panel, allocation)
        now = await versions()
        assert {row for row in before if now[row] != before[row]} == {alice_server}
        before = now
    await _db_change(
        panel,
        update(Server).values(state="running"),
        update(Subuser).values(permissions=["files.read"]),
    )
    after = await versions()
    assert set(after) == set(before)
    assert all(after[row] != before[row] for row in before), "a written row kept its version"
    await world.alice.json(
        "POST",
        f"/api/v1/servers/{ids['alice_server']}/users",
        status=201,
        json={"email": "bob@example.org", "permissions": ["console.read"]},
    )
    (added,) = set((await versions()).items()) - set(after.items())
    assert added[1] != 0


async def test_a_state_change_drops_only_the_lists_that_show_that_server(world: World) -> None:
    """The point of a user's own version: bob's server changing state (as nodes report tens
    of times a second on a fleet) leaves alice's and carol's kept pages alone, and alice's
    server changing state drops alice's and carol's, not bob's."""
    cache = world.panel.server.app[LIST_CACHE]
    viewers = {"alice": world.alice, "bob": world.bob, "carol": world.carol}

    async def kept_after(server: str) -> set[str]:
        for browser in viewers.values():
            await browser.json("GET", "/api/v1/servers")
        await _db_change(
            world.panel,
            update(Server)
            .where(Server.id == uuid.UUID(world.ids[server]))
            .values(state="starting"),
        )
        kept = set()
        for name, browser in viewers.items():
            hits = cache.hits
            await browser.json("GET", "/api/v1/servers")
            if cache.hits > hits:
                kept.add(name)
        return kept

    assert await kept_after("bob_server") == {"alice", "carol"}
    assert await kept_after("alice_server") == {"bob"}
    # An administrator's list shows every server: any change drops it.
    await world.admin.json("GET", "/api/v1/servers")
    await kept_after("bob_server")
    hits = cache.hits
    await world.admin.json("GET", "/api/v1/servers")
    assert cache.hits == hits


async def test_without_the_version_nothing_is_kept(panel: Panel) -> None:
    """A database without the row (made without the migration): every list is read anew."""
    await _db_change(panel, text("DELETE FROM listing_version"))
    admin = await panel.signed_in("root@example.org", admin=True)
    cache = panel.server.app[LIST_CACHE]
    for _ in range(3):
        await admin.json("GET", "/api/v1/servers")
    assert (cache.hits, len(cache)) == (0, 0)
