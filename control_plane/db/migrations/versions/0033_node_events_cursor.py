"""nodes: the last audit-worthy event of the node's stream a follower applied

The agent keeps its last audit-worthy events (crashes, backups, full disks, SFTP logins and
failures) numbered in its stream; a follower that starts (a replica restarted, or taking
over from one that died) resumes after the one recorded here, written in the transaction
that applied it: each is applied once, whichever replica follows.

Revision ID: 0033
Revises: 0032
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0033"
down_revision = "0032"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("nodes", sa.Column("events_cursor", sa.String(40)))


def downgrade() -> None:
    # Not a batch (SQLite would make the table again, and its dependants' keys with it).
    op.execute("ALTER TABLE nodes DROP COLUMN events_cursor")
