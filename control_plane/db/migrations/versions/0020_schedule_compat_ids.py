"""Pterodactyl-compatible ids for schedules and their tasks

The Client API (docs/pterodactyl-compat.md) names schedules and tasks by integers, as it
names servers and users (0015): ``compat_id``, drawn from ``compat_counters`` and never
reused. Existing schedules are numbered in the order they were made, their tasks by
schedule and position.

Revision ID: 0020
Revises: 0018
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0018"
branch_labels = None
depends_on = None

# Table → the columns that order its existing rows.
NUMBERED = {
    "schedules": ("created_at", "id"),
    "schedule_tasks": ("schedule_id", "position"),
}


def _number(bind: sa.Connection, name: str, order: tuple[str, ...]) -> int:
    table = sa.table(name, sa.column("id"), sa.column("compat_id"), *map(sa.column, order))
    rows = bind.execute(sa.select(table.c.id).order_by(*(table.c[c] for c in order))).all()
    for number, (row_id,) in enumerate(rows, start=1):
        bind.execute(table.update().where(table.c.id == row_id).values(compat_id=number))
    return len(rows)


def upgrade() -> None:
    # Plain ALTER TABLE … ADD COLUMN and indexes, never a batch copy (see 0008).
    counters = sa.table("compat_counters", sa.column("name"), sa.column("last_value"))
    bind = op.get_bind()
    for name, order in NUMBERED.items():
        op.add_column(name, sa.Column("compat_id", sa.Integer(), nullable=True))
        last = _number(bind, name, order)
        op.create_index(f"ix_{name}_compat_id", name, ["compat_id"], unique=True)
        bind.execute(counters.insert().values(name=name, last_value=last))


def downgrade() -> None:
    counters = sa.table("compat_counters", sa.column("name"))
    for name in reversed(list(NUMBERED)):
        op.drop_index(f"ix_{name}_compat_id", table_name=name)
        op.drop_column(name, "compat_id")
        op.get_bind().execute(counters.delete().where(counters.c.name == name))
