"""The database layer against SQLite and the real PostgreSQL started by `make test`."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
import sqlalchemy as sa
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from control_plane.db import migrate
from control_plane.db.engine import create_engine, session_factory
from control_plane.db.models import (
    Allocation,
    Backup,
    Blueprint,
    Invitation,
    Node,
    Server,
    Subuser,
    User,
)
from control_plane.db.session import transaction
from control_plane.errors import Conflict, InvalidRequest
from control_plane.security.passwords import verify_password
from control_plane.services import nodes, users
from control_plane.services.servers import placement


async def test_migrations_reach_head_and_are_idempotent(engine: AsyncEngine) -> None:
    assert await migrate.current_revision(engine) == migrate.head_revision()
    await migrate.upgrade(engine)
    assert await migrate.current_revision(engine) == migrate.head_revision()


async def test_node_is_stored_and_found_by_name(engine: AsyncEngine) -> None:
    factory = session_factory(engine)
    async with transaction(factory) as session:
        created = await nodes.add_node(session, name="node-1", url="http://127.0.0.1:8080/")
    async with transaction(factory) as session:
        found = await nodes.get_node_by_name(session, "node-1")
    assert found.id == created.id
    assert found.url == "http://127.0.0.1:8080"
    assert found.status == "unknown"
    assert found.created_at.tzinfo is not None


async def test_duplicate_node_name_is_a_conflict_and_keeps_the_first(engine: AsyncEngine) -> None:
    factory = session_factory(engine)
    async with transaction(factory) as session:
        await nodes.add_node(session, name="dup", url="http://127.0.0.1:8080")
    with pytest.raises(Conflict):
        async with transaction(factory) as session:
            await nodes.add_node(session, name="dup", url="http://127.0.0.1:9090")
    async with transaction(factory) as session:
        rows = list(await session.scalars(select(Node).where(Node.name == "dup")))
    assert [n.url for n in rows] == ["http://127.0.0.1:8080"]


@pytest.mark.parametrize(
    "url",
    [
        "ftp://127.0.0.1:8080",
        "http://user:pw@127.0.0.1:8080",
        "http://127.0.0.1:8080/agent",
        "http://127.0.0.1:8080/?x=1",
        "not a url",
    ],
)
async def test_node_url_must_be_a_bare_http_origin(engine: AsyncEngine, url: str) -> None:
    with pytest.raises(InvalidRequest):
        async with transaction(session_factory(engine)) as session:
            await nodes.add_node(session, name="n", url=url)


@pytest.mark.real_password_cost
async def test_user_password_is_hashed_with_bcrypt_and_email_unique(engine: AsyncEngine) -> None:
    factory = session_factory(engine)
    password = "correct horse battery staple ü" * 4  # 124 characters, non-ASCII
    async with transaction(factory) as session:
        await users.create_user(
            session, email="Admin@Example.org", password=password, is_admin=True, bcrypt_cost=10
        )
    async with transaction(factory) as session:
        user = await session.scalar(select(User).where(User.email == "admin@example.org"))
        assert user is not None
        assert user.password_hash is not None
        assert user.password_hash.startswith("$2b$10$")
        assert await verify_password(password, user.password_hash, 10)
        # The end of a long password counts: bcrypt's 72-byte cut does not apply.
        assert not await verify_password(password[:-1] + "x", user.password_hash, 10)
        assert await users.count_admins(session) == 1
    with pytest.raises(Conflict):
        async with transaction(factory) as session:
            await users.create_user(
                session,
                email="admin@example.org",
                password=password,
                is_admin=False,
                bcrypt_cost=10,
            )


async def one_server(db: AsyncSession, owner: User) -> Server:
    """A server of ``owner`` on a node of its own (one port), of a minimal blueprint."""
    node = Node(name="n", url="http://127.0.0.1:9", memory_mib=0, disk_mib=0)
    db.add(node)
    await db.flush()
    db.add(Allocation(node_id=node.id, ip="127.0.0.1", port=30000))
    blueprint = Blueprint(
        name="b",
        images=[{"name": "default", "image": "img"}],
        startup="run",
        stop={"type": "signal", "value": "SIGTERM"},
    )
    db.add(blueprint)
    await db.flush()
    return await placement.create_server(
        db,
        name="s",
        owner=owner,
        blueprint=blueprint,
        node_id=node.id,
        image=None,
        limits=placement.ServerLimits(64, 0, 100, 256, 64),
        variables={},
    )


async def test_backup_figures_move_to_stored_bytes_when_migrating(database_url: str) -> None:
    # Until 0007, size_bytes and sha256 were the node's encrypted file, not the download.
    engine = create_engine(database_url)
    try:
        # The rows are made with today's models, then the schema goes back to before 0007.
        await migrate.upgrade(engine)
        async with transaction(session_factory(engine)) as db:
            owner = await users.create_user(
                db, email="o@example.org", password="x" * 12, is_admin=False, bcrypt_cost=4
            )
            server_id = (await one_server(db, owner)).id
        await migrate.downgrade(engine, "0006")
        old = sa.table(
            "backups",
            sa.column("id", sa.Uuid()),
            sa.column("server_id", sa.Uuid()),
            sa.column("name", sa.String()),
            sa.column("status", sa.String()),
            sa.column("locked", sa.Boolean()),
            sa.column("ignore", sa.JSON()),
            sa.column("size_bytes", sa.BigInteger()),
            sa.column("sha256", sa.String()),
            sa.column("created_at", sa.DateTime(timezone=True)),
        )
        backup_id = uuid.uuid4()
        async with engine.begin() as connection:
            await connection.execute(
                old.insert().values(
                    id=backup_id,
                    server_id=server_id,
                    name="old",
                    status="completed",
                    locked=False,
                    ignore=[],
                    size_bytes=4242,
                    sha256="ab" * 32,
                    created_at=dt.datetime.now(dt.UTC),
                )
            )

        await migrate.upgrade(engine)

        async with transaction(session_factory(engine)) as db:
            backup = await db.get(Backup, backup_id)
            assert backup is not None
            assert (backup.stored_bytes, backup.size_bytes, backup.sha256) == (4242, None, None)
    finally:
        await engine.dispose()


async def test_existing_users_get_distinct_sftp_account_names_when_migrating(
    database_url: str,
) -> None:
    # Before 0010, users had no account name: the migration makes one from the e-mail.
    engine = create_engine(database_url)
    try:
        await migrate.upgrade(engine, "0009")
        old_users = sa.table(
            "users",
            sa.column("id", sa.Uuid()),
            sa.column("email", sa.String()),
            sa.column("is_admin", sa.Boolean()),
            sa.column("disabled", sa.Boolean()),
            sa.column("created_at", sa.DateTime(timezone=True)),
        )
        emails = ["alice@a.org", "alice@b.org", "bob.smith+games@c.org", "ünï@d.org"]
        async with engine.begin() as connection:
            for email in emails:
                await connection.execute(
                    old_users.insert().values(
                        id=uuid.uuid4(),
                        email=email,
                        is_admin=False,
                        disabled=False,
                        created_at=dt.datetime.now(dt.UTC),
                    )
                )
        await migrate.upgrade(engine)
        async with transaction(session_factory(engine)) as db:
            names = {u.email: u.username for u in await db.scalars(select(User))}
            # A user made after the migration gets the next free name the same way.
            later = await users.create_user(
                db, email="Alice@e.org", password="x" * 12, is_admin=False, bcrypt_cost=4
            )
        assert sorted(names[e] for e in emails[:2]) == ["alice", "alice2"]
        assert names["bob.smith+games@c.org"] == "bobsmithgames"
        assert names["ünï@d.org"] == "n"
        assert later.username == "alice3"
    finally:
        await engine.dispose()


async def test_control_console_grants_become_console_write_when_migrating(
    database_url: str,
) -> None:
    """``control.console`` opened no route (0030): a sub-user or invitation granted it gets
    what it was meant to give, sending console commands (``console.write``), and nothing else
    in their grant changes."""
    engine = create_engine(database_url)
    try:
        # The rows are made with today's models, then the schema goes back to before 0030
        # (whose downgrade leaves grants as they are).
        await migrate.upgrade(engine)
        async with transaction(session_factory(engine)) as db:
            owner = await users.create_user(
                db, email="owner@a.org", password="x" * 12, is_admin=False, bcrypt_cost=4
            )
            helpers = [
                await users.create_user(
                    db, email=f"helper{n}@a.org", password="x" * 12, is_admin=False, bcrypt_cost=4
                )
                for n in range(3)
            ]
            server = await one_server(db, owner)
            grants = [
                ["control.console", "console.read"],
                ["console.write", "control.console", "files.read"],
                ["control.start", "console.read"],
            ]
            subs = [
                Subuser(server_id=server.id, user_id=helper.id, permissions=granted)
                for helper, granted in zip(helpers, grants, strict=True)
            ]
            invitation = Invitation(
                server_id=server.id,
                email="new@a.org",
                permissions=["control.console"],
                token_hash="0" * 64,
                expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(days=1),
            )
            db.add_all([*subs, invitation])
        await migrate.downgrade(engine, "0029")
        await migrate.upgrade(engine)
        async with transaction(session_factory(engine)) as db:
            after = [(await db.get(Subuser, sub.id)) for sub in subs]
            invited = await db.get(Invitation, invitation.id)
        assert [sub.permissions for sub in after if sub is not None] == [
            ["console.write", "console.read"],
            ["console.write", "files.read"],
            ["control.start", "console.read"],
        ]
        assert invited is not None
        assert invited.permissions == ["console.write"]
    finally:
        await engine.dispose()


async def test_listed_rows_get_versions_of_their_own_when_migrating(database_url: str) -> None:
    """0031: rows made before it get distinct random versions, and the downgrade takes the
    versions away again."""
    engine = create_engine(database_url)
    tables = ("servers", "subusers")
    try:
        # The rows are made with today's models, then the schema goes back to before 0031.
        await migrate.upgrade(engine)
        async with transaction(session_factory(engine)) as db:
            owner = await users.create_user(
                db, email="owner@a.org", password="x" * 12, is_admin=False, bcrypt_cost=4
            )
            helper = await users.create_user(
                db, email="helper@a.org", password="x" * 12, is_admin=False, bcrypt_cost=4
            )
            server = await one_server(db, owner)
            db.add(Subuser(server_id=server.id, user_id=helper.id, permissions=["files.read"]))
        await migrate.downgrade(engine, "0030")
        async with engine.connect() as connection:
            for table in tables:
                names = await connection.run_sync(_column_names, table)
                assert "list_version" not in names
            rows = await connection.scalars(sa.text("SELECT id FROM listing_version"))
            assert list(rows) == [1]
        await migrate.upgrade(engine)
        async with engine.connect() as connection:
            versions = [
                (
                    await connection.execute(sa.text(f"SELECT list_version FROM {table}"))
                ).scalar_one()
                for table in tables
            ]
            catalogue = await connection.scalar(
                sa.text("SELECT version FROM listing_version WHERE id = 2")
            )
        assert len(set(versions)) == 2, versions
        assert 0 not in versions
        assert catalogue is not None
    finally:
        await engine.dispose()


def _column_names(connection: sa.Connection, table: str) -> set[str]:
    return {column["name"] for column in sa.inspect(connection).get_columns(table)}
