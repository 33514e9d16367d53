"""Pterodactyl-compatible ids: stable integers and server identifiers beside our UUIDs

Users, locations, nodes, blueprints, servers and allocations get ``compat_id``: the integer
the Pterodactyl-compatible API (docs/pterodactyl-compat.md) names them by, assigned once
from ``compat_counters`` and never reused. Servers get ``identifier`` (the first 8 hex
digits of their UUID, another 8 on a clash), ``external_id`` and ``description``; users
``external_id``; both a ``compat_fields`` JSON of what that API sends and we only keep
(first and last name, io, threads, feature limits …). API keys get ``kind``: ``stellar``
(``stl_…``), ``application`` (``ptla_…``) or ``client`` (``ptlc_…``). Existing rows are
numbered in the order they were made.

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

# Table → the columns that order its existing rows (the order they were made in).
NUMBERED = {
    "users": ("created_at", "id"),
    "locations": ("created_at", "id"),
    "nodes": ("created_at", "id"),
    "blueprints": ("created_at", "id"),
    "servers": ("created_at", "id"),
    "allocations": ("node_id", "ip", "port"),
}


def _number(bind: sa.Connection, name: str, order: tuple[str, ...]) -> int:
    table = sa.table(name, sa.column("id"), sa.column("compat_id"), *map(sa.column, order))
    rows = bind.execute(sa.select(table.c.id).order_by(*(table.c[c] for c in order))).all()
    for number, (row_id,) in enumerate(rows, start=1):
        bind.execute(table.update().where(table.c.id == row_id).values(compat_id=number))
    return len(rows)


def _identifiers(bind: sa.Connection) -> None:
    servers = sa.table("servers", sa.column("id", sa.Uuid()), sa.column("identifier"))
    taken: set[str] = set()
    for (server_id,) in bind.execute(sa.select(servers.c.id).order_by(servers.c.id)).all():
        identifier = server_id.hex[:8]
        while identifier in taken:
            identifier = secrets.token_hex(4)
        taken.add(identifier)
        bind.execute(
            servers.update().where(servers.c.id == server_id).values(identifier=identifier)
        )


def upgrade() -> None:
    # Plain ALTER TABLE … ADD COLUMN and indexes, never a batch copy (see 0008).
    counters = op.create_table(
        "compat_counters",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("last_value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_compat_counters")),
    )
    bind = op.get_bind()
    for name, order in NUMBERED.items():
        op.add_column(name, sa.Column("compat_id", sa.Integer(), nullable=True))
        last = _number(bind, name, order)
        op.create_index(f"ix_{name}_compat_id", name, ["compat_id"], unique=True)
        bind.execute(counters.insert().values(name=name, last_value=last))
    op.add_column("servers", sa.Column("identifier", sa.String(length=8), nullable=True))
    _identifiers(bind)
    op.create_index("ix_servers_identifier", "servers", ["identifier"], unique=True)
    for name in ("users", "servers"):
        op.add_column(name, sa.Column("external_id", sa.String(length=191), nullable=True))
        op.create_index(f"ix_{name}_external_id", name, ["external_id"], unique=True)
        op.add_column(name, sa.Column("compat_fields", sa.JSON(), nullable=True))
    op.add_column(
        "servers",
        sa.Column("description", sa.Text(), nullable=False, server_default=sa.text("''")),
    )
    op.add_column(
        "api_keys",
        sa.Column(
            "kind", sa.String(length=16), nullable=False, server_default=sa.text("'stellar'")
        ),
    )


def downgrade() -> None:
    op.drop_column("api_keys", "kind")
    op.drop_column("servers", "description")
    for name in ("users", "servers"):
        op.drop_column(name, "compat_fields")
        op.drop_index(f"ix_{name}_external_id", table_name=name)
        op.drop_column(name, "external_id")
    op.drop_index("ix_servers_identifier", table_name="servers")
    op.drop_column("servers", "identifier")
    for name in reversed(list(NUMBERED)):
        op.drop_index(f"ix_{name}_compat_id", table_name=name)
        op.drop_column(name, "compat_id")
    op.drop_table("compat_counters")
