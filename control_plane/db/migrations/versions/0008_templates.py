"""blueprints as a superset of eggs; a server's last install outcome

Blueprints gain what an egg carries beyond the startup command: configuration-file rules,
the console text that says a game is up, whether the image's own command runs (eggs' images
read ``STARTUP``), features, and the egg's identity (``egg_uuid``, so re-importing the same
egg updates its blueprint). Servers keep their last install's exit code, duration and last
lines, so a failed install can be shown to the user.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ALTER TABLE … ADD COLUMN, never a batch copy: on SQLite a copy of ``blueprints``
    # would drop a table that servers reference.
    empty = sa.text("'[]'")
    op.add_column(
        "blueprints", sa.Column("config_files", sa.JSON(), nullable=False, server_default=empty)
    )
    op.add_column(
        "blueprints", sa.Column("startup_done", sa.JSON(), nullable=False, server_default=empty)
    )
    op.add_column(
        "blueprints",
        sa.Column("image_command", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.add_column(
        "blueprints", sa.Column("features", sa.JSON(), nullable=False, server_default=empty)
    )
    op.add_column("blueprints", sa.Column("egg_uuid", sa.String(length=36), nullable=True))
    op.add_column(
        "blueprints", sa.Column("author", sa.String(length=255), nullable=False, server_default="")
    )
    op.create_index("ix_blueprints_egg_uuid", "blueprints", ["egg_uuid"], unique=True)
    op.add_column("servers", sa.Column("install_exit_code", sa.Integer(), nullable=True))
    op.add_column("servers", sa.Column("install_seconds", sa.Float(), nullable=True))
    op.add_column("servers", sa.Column("install_output", sa.JSON(), nullable=True))
    op.add_column("servers", sa.Column("install_reason", sa.String(length=255), nullable=True))


def downgrade() -> None:
    # Plain ALTER TABLE … DROP COLUMN (SQLite 3.35+): a batch copy of ``blueprints`` would
    # have to drop a table that servers still reference.
    for column in ("install_reason", "install_output", "install_seconds", "install_exit_code"):
        op.drop_column("servers", column)
    op.drop_index("ix_blueprints_egg_uuid", table_name="blueprints")
    for column in (
        "author",
        "egg_uuid",
        "features",
        "image_command",
        "startup_done",
        "config_files",
    ):
        op.drop_column("blueprints", column)
