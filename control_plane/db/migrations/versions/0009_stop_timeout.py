"""blueprints say how long a game has to stop

``stop_timeout_seconds``: after the stop command or signal, the game has this long to exit
before it is killed (the node's spec has carried it; every server got 30 s).

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ALTER TABLE … ADD COLUMN, never a batch copy: on SQLite a copy of ``blueprints``
    # would drop a table that servers reference (see 0008).
    op.add_column(
        "blueprints",
        sa.Column(
            "stop_timeout_seconds", sa.Integer(), nullable=False, server_default=sa.text("30")
        ),
    )


def downgrade() -> None:
    op.drop_column("blueprints", "stop_timeout_seconds")
