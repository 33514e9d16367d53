"""webhooks: the API key the URL was chosen with (its revocation or expiry turns them off)

Revision ID: 0029
Revises: 0028
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0029"
down_revision = "0028"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN, never a batch copy (see 0010).
    op.add_column("webhooks", sa.Column("chosen_with_key", sa.Uuid(), nullable=True))


def downgrade() -> None:
    op.drop_column("webhooks", "chosen_with_key")
