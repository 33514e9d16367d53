"""allocations: notes, and which one is the server's main port

A server's users (``allocations.update``) note what each of its ports is for and choose the
main one (``SERVER_PORT``, first in the node's spec); with none chosen the lowest is, as
before. Both are cleared when a port is given to a server.

Revision ID: 0034
Revises: 0033
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0034"
down_revision = "0033"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("allocations", sa.Column("notes", sa.String(255)))
    op.add_column(
        "allocations",
        sa.Column("is_primary", sa.Boolean(), nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    # Not a batch (SQLite would make the table again, and its triggers with it).
    op.execute("ALTER TABLE allocations DROP COLUMN is_primary")
    op.execute("ALTER TABLE allocations DROP COLUMN notes")
