"""second-factor failures, counted per account

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "second_factor_failures",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("failed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("session_id", sa.Uuid(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_second_factor_failures_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_second_factor_failures")),
    )
    with op.batch_alter_table("second_factor_failures", schema=None) as batch_op:
        batch_op.create_index(
            "ix_second_factor_failures_user_id_failed_at", ["user_id", "failed_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("second_factor_failures", schema=None) as batch_op:
        batch_op.drop_index("ix_second_factor_failures_user_id_failed_at")
    op.drop_table("second_factor_failures")
