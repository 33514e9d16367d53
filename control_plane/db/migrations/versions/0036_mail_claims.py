"""mail_outbox: claimed_until, a mail being sent by one replica

A replica claims each mail just before it sends it, for longer than a delivery may take;
another replica sends it only once the claim has ended. A replica frozen in the middle of a
delivery (SIGSTOP, a paused VM) no longer has that mail sent a second time by the replica
that takes over its pass, unless it stays frozen past the claim (``mail/sender.py``).

Revision ID: 0036
Revises: 0035
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0036"
down_revision = "0035"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("mail_outbox", sa.Column("claimed_until", sa.DateTime(timezone=True)))


def downgrade() -> None:
    # Not a batch (SQLite would make the table again).
    op.execute("ALTER TABLE mail_outbox DROP COLUMN claimed_until")
