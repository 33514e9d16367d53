"""servers: the revision of the last spec sent to the node

Every spec the control plane sends a node is numbered above the last one for that server,
and the node keeps the highest it was given: of two changes made at once (a variable and a
main port, by two users or two replicas) neither is lost at the node, and a spec held up on
the way never replaces a newer one (``control_plane/services/servers/spec_changes.py``).

Revision ID: 0035
Revises: 0034
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0035"
down_revision = "0034"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "servers",
        sa.Column("spec_revision", sa.Integer(), nullable=False, server_default=sa.text("0")),
    )


def downgrade() -> None:
    # Not a batch (SQLite would make the table again, and its triggers with it).
    op.execute("ALTER TABLE servers DROP COLUMN spec_revision")
