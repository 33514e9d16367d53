"""SFTP access tables carry a version: ``nodes.sftp_access_version``, the last one given,
and ``nodes.sftp_acked_version``, the last one the node took

Each push of a node's SFTP access table takes the next version; the node refuses a table
older than the one it holds (docs/sftp.md). While the node has not taken the last one, the
health loop pushes again.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "nodes",
        sa.Column("sftp_access_version", sa.BigInteger(), nullable=False, server_default="0"),
    )
    op.add_column(
        "nodes",
        sa.Column("sftp_acked_version", sa.BigInteger(), nullable=False, server_default="0"),
    )


def downgrade() -> None:
    op.drop_column("nodes", "sftp_acked_version")
    op.drop_column("nodes", "sftp_access_version")
