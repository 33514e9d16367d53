"""The lists' version: ``listing_version``, one row, replaced by triggers in the same
transaction as every write that can change a server list

A list read at version V is the list of every snapshot that sees V (docs/performance.md):
the triggers make that true for every writer, the ORM, the CLI, raw SQL and later
migrations alike, where a hook in the application could miss one. Watched: every insert,
update and delete of ``servers``, ``allocations``, ``subusers`` and ``blueprints``; inserts,
deletes and changes of id or name of ``nodes`` (their health columns change every few
seconds and no list shows them). tests/integration/control_plane/test_list_cache.py checks
these against every column the cached lists' statements read.

On PostgreSQL the trigger is deferred to the commit and bumps once per transaction: the
version row's lock is the last one a writer takes and is held only while it commits, so
writers touching servers in different orders cannot deadlock on it.

Revision ID: 0028
Revises: 0019
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0028"
down_revision = "0019"
branch_labels = None
depends_on = None

# Table → the columns whose update is watched (None: every column).
WATCHED: dict[str, tuple[str, ...] | None] = {
    "servers": None,
    "allocations": None,
    "subusers": None,
    "blueprints": None,
    "nodes": ("id", "name"),
}
EVENTS = ("insert", "update", "delete")
_PG_FUNCTION = """
CREATE FUNCTION listing_version_bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(current_setting('stellar.listing_bumped', true), '') <> 'yes' THEN
        PERFORM set_config('stellar.listing_bumped', 'yes', true);
        UPDATE listing_version SET version = floor(random() * 9007199254740991)::bigint
            WHERE id = 1;
    END IF;
    RETURN NULL;
END
$$
"""


def _on(event: str, columns: tuple[str, ...] | None) -> str:
    if event == "update" and columns is not None:
        return "UPDATE OF " + ", ".join(columns)
    return event.upper()


def upgrade() -> None:
    op.create_table(
        "listing_version",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_listing_version")),
    )
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute(
            "INSERT INTO listing_version (id, version) "
            "VALUES (1, floor(random() * 9007199254740991)::bigint)"
        )
        op.execute(_PG_FUNCTION)
        for table, columns in WATCHED.items():
            events = " OR ".join(_on(event, columns) for event in EVENTS)
            op.execute(
                f"CREATE CONSTRAINT TRIGGER listing_version_{table} AFTER {events} ON {table} "
                "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW "
                "EXECUTE FUNCTION listing_version_bump()"
            )
        return
    op.execute("INSERT INTO listing_version (id, version) VALUES (1, random())")
    # Table and column names are this module's constants, not input.
    bump = "UPDATE listing_version SET version = random() WHERE id = 1;"
    for table, columns in WATCHED.items():
        for event in EVENTS:
            name, on = f"listing_version_{table}_{event}", _on(event, columns)
            op.execute(f"CREATE TRIGGER {name} AFTER {on} ON {table} BEGIN {bump} END")


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        for table in WATCHED:
            op.execute(f"DROP TRIGGER listing_version_{table} ON {table}")
        op.execute("DROP FUNCTION listing_version_bump()")
    else:
        for table in WATCHED:
            for event in EVENTS:
                op.execute(f"DROP TRIGGER listing_version_{table}_{event}")
    op.drop_table("listing_version")
