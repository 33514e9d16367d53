"""users: when all of an account's sessions were last ended

A browser that signed in as an account is recognised by its device cookie and has an
allowance of password tries of its own (``control_plane/security/devices.py``). Whatever
takes an account back by ending all its sessions (a password change or reset, an
administrator, disabling it) now also makes every browser that signed in before a stranger
to it: the cookie says when it signed in, this column when the sessions were ended.

Revision ID: 0032
Revises: 0031
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0032"
down_revision = "0031"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("users", sa.Column("sessions_ended_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    # Not a batch (SQLite would make the table again, and its dependants' keys with it).
    op.execute("ALTER TABLE users DROP COLUMN sessions_ended_at")
