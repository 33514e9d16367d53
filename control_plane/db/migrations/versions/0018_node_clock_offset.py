"""nodes: the node's clock offset, as the last health poll measured it

Revision ID: 0018
Revises: 0016
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN, never a batch copy (see 0010).
    op.add_column("nodes", sa.Column("clock_offset_seconds", sa.Float(), nullable=True))


def downgrade() -> None:
    op.drop_column("nodes", "clock_offset_seconds")
