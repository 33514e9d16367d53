"""lists' versions per user: every row a user's list shows carries a random version

0028's one version changes with every write any list shows, so on a busy fleet (servers
changing state tens of times a second) every kept list is dropped before it is asked for
again. A user's list shows only their servers (owned or shared), those servers' allocations,
the user's own sub-user rows, and node names and blueprint fields. So:

- ``servers`` and ``subusers`` get a ``list_version`` column that a trigger gives a new
  random value on every insert and every update of the row, in that statement; a write of
  an allocation renews the version of the server(s) it belongs to (summing allocations'
  own versions too cost PostgreSQL ~90 us more per list request, a nested loop over the
  user's servers' allocations);
- a second row of ``listing_version`` (id 2, "the catalogue") is replaced by every write of
  what a list reads from the tables a user shares with everyone: blueprints, and nodes' id
  and name;
- a user's version is the catalogue's plus the sum of the ``list_version`` of every row
  their list reads (``control_plane/db/models/listing.py``), read in the same statement as
  those rows. It is a function of the snapshot: any change that a user's list shows
  changes it (but for a chance of 2^-40), whatever the order writers commit in. The one
  lock a writer takes that it did not before: an allocation's write locks its server's
  row (the writers of allocations — a server being made, deleted or given a port — already
  hold it, or write no other server).

Values are below 2^40 so that a sum of up to 2^22 rows stays a 64-bit integer (SQLite's
``sum`` refuses beyond; the sum is read modulo 2^62 on both).

On PostgreSQL the catalogue is replaced at commit, once per transaction, as 0028's row, and
its trigger replaces row 1 first: every writer locks the two rows in one order.

Revision ID: 0031
Revises: 0030
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0031"
down_revision = "0030"
branch_labels = None
depends_on = None

ROWS = ("servers", "subusers")
# Table → the columns whose update is watched (None: every column), as 0028's.
CATALOGUE: dict[str, tuple[str, ...] | None] = {
    "blueprints": None,
    "nodes": ("id", "name"),
}
EVENTS = ("insert", "update", "delete")
# A random value below 2^40 (2^40 - 1 is 1099511627775).
_PG_RANDOM = "floor(random() * 1099511627776)::bigint"
_SQLITE_RANDOM = "(random() & 1099511627775)"
_PG_ROW_FUNCTION = """
CREATE FUNCTION list_row_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.list_version := floor(random() * 1099511627776)::bigint;
    RETURN NEW;
END
$$
"""
_PG_ALLOCATION_FUNCTION = """
CREATE FUNCTION list_allocation_server_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- servers' own trigger gives the version its new value.
    IF TG_OP <> 'INSERT' AND OLD.server_id IS NOT NULL THEN
        UPDATE servers SET list_version = 0 WHERE id = OLD.server_id;
    END IF;
    IF TG_OP <> 'DELETE' AND NEW.server_id IS NOT NULL THEN
        UPDATE servers SET list_version = 0 WHERE id = NEW.server_id;
    END IF;
    RETURN NULL;
END
$$
"""
_SQLITE_ALLOCATION_TRIGGERS = {
    "insert": ("AFTER INSERT", "NEW.server_id"),
    "update": ("AFTER UPDATE", "OLD.server_id, NEW.server_id"),
    "delete": ("AFTER DELETE", "OLD.server_id"),
}
_PG_CATALOGUE_FUNCTION = """
CREATE FUNCTION listing_catalogue_bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(current_setting('stellar.listing_bumped', true), '') <> 'yes' THEN
        PERFORM set_config('stellar.listing_bumped', 'yes', true);
        UPDATE listing_version SET version = floor(random() * 9007199254740991)::bigint
            WHERE id = 1;
    END IF;
    IF coalesce(current_setting('stellar.catalogue_bumped', true), '') <> 'yes' THEN
        PERFORM set_config('stellar.catalogue_bumped', 'yes', true);
        UPDATE listing_version SET version = floor(random() * 1099511627776)::bigint
            WHERE id = 2;
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
    bind = op.get_bind()
    postgres = bind.dialect.name == "postgresql"
    random = _PG_RANDOM if postgres else _SQLITE_RANDOM
    # Table names are this module's constants, not input.
    for table in ROWS:
        op.add_column(
            table,
            sa.Column("list_version", sa.BigInteger(), nullable=False, server_default="0"),
        )
        listed = sa.table(table, sa.column("list_version"))
        op.execute(listed.update().values(list_version=sa.text(random)))
    catalogue = sa.table("listing_version", sa.column("id"), sa.column("version"))
    op.execute(catalogue.insert().values(id=2, version=sa.text(random)))
    if postgres:
        op.execute(_PG_ROW_FUNCTION)
        op.execute(_PG_ALLOCATION_FUNCTION)
        op.execute(_PG_CATALOGUE_FUNCTION)
        op.execute(
            "CREATE TRIGGER list_allocation_server_version AFTER INSERT OR UPDATE OR DELETE "
            "ON allocations FOR EACH ROW EXECUTE FUNCTION list_allocation_server_version()"
        )
        for table in ROWS:
            op.execute(
                f"CREATE TRIGGER list_row_version_{table} BEFORE INSERT OR UPDATE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION list_row_version()"
            )
        for table, columns in CATALOGUE.items():
            events = " OR ".join(_on(event, columns) for event in EVENTS)
            op.execute(
                f"CREATE CONSTRAINT TRIGGER listing_catalogue_{table} AFTER {events} ON {table} "
                "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW "
                "EXECUTE FUNCTION listing_catalogue_bump()"
            )
        return
    # SQLite: a trigger cannot set NEW, so the row is written again after the statement's
    # write; the WHEN keeps that second write from firing the trigger once more.
    for table in ROWS:
        renew = f"UPDATE {table} SET list_version = {random} WHERE rowid = NEW.rowid;"  # noqa: S608
        op.execute(
            f"CREATE TRIGGER list_row_version_{table}_insert AFTER INSERT ON {table} "
            f"BEGIN {renew} END"
        )
        op.execute(
            f"CREATE TRIGGER list_row_version_{table}_update AFTER UPDATE ON {table} "
            f"WHEN OLD.list_version = NEW.list_version BEGIN {renew} END"
        )
    for event, (when, servers) in _SQLITE_ALLOCATION_TRIGGERS.items():
        # servers' own update trigger is skipped: the version is new already.
        renew = f"UPDATE servers SET list_version = {random} WHERE id IN ({servers});"  # noqa: S608
        op.execute(
            f"CREATE TRIGGER list_allocation_server_version_{event} {when} ON allocations "
            f"BEGIN {renew} END"
        )
    bump = "UPDATE listing_version SET version = (random() & 1099511627775) WHERE id = 2;"
    for table, columns in CATALOGUE.items():
        for event in EVENTS:
            name, on = f"listing_catalogue_{table}_{event}", _on(event, columns)
            op.execute(f"CREATE TRIGGER {name} AFTER {on} ON {table} BEGIN {bump} END")


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        for table in CATALOGUE:
            op.execute(f"DROP TRIGGER listing_catalogue_{table} ON {table}")
        op.execute("DROP TRIGGER list_allocation_server_version ON allocations")
        for table in ROWS:
            op.execute(f"DROP TRIGGER list_row_version_{table} ON {table}")
        op.execute("DROP FUNCTION listing_catalogue_bump()")
        op.execute("DROP FUNCTION list_allocation_server_version()")
        op.execute("DROP FUNCTION list_row_version()")
    else:
        for table in CATALOGUE:
            for event in EVENTS:
                op.execute(f"DROP TRIGGER listing_catalogue_{table}_{event}")
        for event in _SQLITE_ALLOCATION_TRIGGERS:
            op.execute(f"DROP TRIGGER list_allocation_server_version_{event}")
        for table in ROWS:
            op.execute(f"DROP TRIGGER list_row_version_{table}_insert")
            op.execute(f"DROP TRIGGER list_row_version_{table}_update")
    op.execute("DELETE FROM listing_version WHERE id = 2")
    # Not a batch (SQLite would make the tables again, without 0028's triggers).
    for table in ROWS:
        op.execute(f"ALTER TABLE {table} DROP COLUMN list_version")
