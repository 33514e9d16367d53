"""sub-users: the ``control.console`` node becomes ``console.write``

``control.console`` was a node of its own that no route asked for: granted in the panel it let
a sub-user do nothing, though its description promised the console. Sending commands is
``console.write`` on every transport (Pterodactyl's ``control.console`` is shown for it), so
the node is gone and every grant of it, a sub-user's or a pending invitation's, becomes
``console.write``: what it was meant to give.

Revision ID: 0030
Revises: 0029
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0030"
down_revision = "0029"
branch_labels = None
depends_on = None

OLD = "control.console"
NEW = "console.write"
TABLES = ("subusers", "invitations")


def _rewrite(old: str, new: str) -> None:
    bind = op.get_bind()
    for name in TABLES:
        table = sa.table(name, sa.column("id", sa.Uuid()), sa.column("permissions", sa.JSON()))
        for row_id, granted in bind.execute(sa.select(table.c.id, table.c.permissions)):
            if not isinstance(granted, list) or old not in granted:
                continue
            changed = list(dict.fromkeys(new if node == old else node for node in granted))
            bind.execute(table.update().where(table.c.id == row_id).values(permissions=changed))


def upgrade() -> None:
    _rewrite(OLD, NEW)


def downgrade() -> None:
    pass  # console.write stays console.write: which grants were control.console is not kept
