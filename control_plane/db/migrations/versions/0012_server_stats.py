"""Resource history: ``server_stats``, servers' CPU, memory, network and disk downsampled to
10-second and 5-minute buckets (control_plane/services/resource_history.py).

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "server_stats",
        sa.Column("server_id", sa.Uuid(), nullable=False),
        sa.Column("resolution", sa.Integer(), nullable=False),
        sa.Column("bucket", sa.BigInteger(), nullable=False),
        sa.Column("samples", sa.Integer(), nullable=False),
        sa.Column("cpu_sum", sa.Float(), nullable=False),
        sa.Column("cpu_max", sa.Float(), nullable=False),
        sa.Column("memory_sum", sa.Float(), nullable=False),
        sa.Column("memory_max", sa.BigInteger(), nullable=False),
        sa.Column("rate_samples", sa.Integer(), nullable=False),
        sa.Column("rx_rate_sum", sa.Float(), nullable=False),
        sa.Column("tx_rate_sum", sa.Float(), nullable=False),
        sa.Column("disk_used", sa.BigInteger(), nullable=True),
        sa.Column("disk_limit", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["server_id"],
            ["servers.id"],
            name=op.f("fk_server_stats_server_id_servers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("server_id", "resolution", "bucket", name=op.f("pk_server_stats")),
    )
    op.create_index("ix_server_stats_resolution", "server_stats", ["resolution", "bucket"])


def downgrade() -> None:
    op.drop_table("server_stats")
