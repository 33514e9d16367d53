"""signed links: the ids of used ones (each link works once)

Revision ID: 0019
Revises: 0020
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "signed_link_uses",
        sa.Column("jti", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("jti", name=op.f("pk_signed_link_uses")),
    )
    op.create_index(
        op.f("ix_signed_link_uses_expires_at"), "signed_link_uses", ["expires_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_signed_link_uses_expires_at"), table_name="signed_link_uses")
    op.drop_table("signed_link_uses")
