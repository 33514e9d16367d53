"""servers: port_limit, how many ports the server's users may hold

A server's users take free ports of its node and give them back, up to this many in all
(``allocations.create``/``allocations.delete``); 0, the default, leaves ports to the
administrators. A server made through Pterodactyl's application API kept the limit it was
sent (``feature_limits.allocations``) in ``compat_fields``: it becomes the server's limit.

Revision ID: 0037
Revises: 0036
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0037"
down_revision = "0036"
branch_labels = None
depends_on = None

_SERVERS = sa.table(
    "servers",
    sa.column("id", sa.Uuid()),
    sa.column("compat_fields", sa.JSON()),
    sa.column("port_limit", sa.Integer()),
)


def upgrade() -> None:
    op.add_column(
        "servers",
        sa.Column("port_limit", sa.Integer(), nullable=False, server_default=sa.text("0")),
    )
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(_SERVERS.c.id, _SERVERS.c.compat_fields).where(
            _SERVERS.c.compat_fields.is_not(None)
        )
    ).all()
    for server_id, fields in rows:
        kept = fields.get("allocations") if isinstance(fields, dict) else None
        if isinstance(kept, int) and not isinstance(kept, bool) and kept > 0:
            # At most what one spec holds (shared/server_spec.py MAX_ALLOCATIONS, 64).
            limit = min(kept, 64)
            bind.execute(
                sa.update(_SERVERS).where(_SERVERS.c.id == server_id).values(port_limit=limit)
            )


def downgrade() -> None:
    # Not a batch (SQLite would make the table again, and its triggers with it).
    op.execute("ALTER TABLE servers DROP COLUMN port_limit")
