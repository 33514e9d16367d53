"""backups: size and SHA-256 of the download; the node's encrypted copy as stored_bytes

Until now ``size_bytes`` and ``sha256`` held the figures of the encrypted file the node
keeps, not of the .tar.gz a user downloads. The stored size moves to ``stored_bytes``; the
download's figures of existing backups are unknown (NULL) and not guessed.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

backups = sa.table(
    "backups",
    sa.column("size_bytes", sa.BigInteger()),
    sa.column("sha256", sa.String(length=64)),
    sa.column("stored_bytes", sa.BigInteger()),
)


def upgrade() -> None:
    with op.batch_alter_table("backups", schema=None) as batch_op:
        batch_op.add_column(sa.Column("stored_bytes", sa.BigInteger(), nullable=True))
    op.execute(
        backups.update().values(stored_bytes=backups.c.size_bytes, size_bytes=None, sha256=None)
    )


def downgrade() -> None:
    op.execute(backups.update().values(size_bytes=backups.c.stored_bytes, sha256=None))
    with op.batch_alter_table("backups", schema=None) as batch_op:
        batch_op.drop_column("stored_bytes")
