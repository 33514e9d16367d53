"""SFTP: an account name per user, SSH public keys per user, per-server SFTP passwords

Users get ``username`` (the account part of SFTP logins, ``[a-z0-9_-]{1,32}``, unique),
made for existing users from their e-mail's local part (other characters dropped, a number
added on a clash). ``ssh_keys`` holds their public keys; ``sftp_passwords`` a user's SFTP
password for one server, encrypted (``secret``), and the scrypt hash pushed to its node.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def _name(email: str, taken: set[str]) -> str:
    # The same rule as control_plane.services.users.username_for, frozen here.
    base = re.sub(r"[^a-z0-9_-]", "", email.split("@", 1)[0].lower())[:24] or "user"
    name, number = base, 1
    while name in taken:
        number += 1
        name = f"{base}{number}"
    taken.add(name)
    return name


def upgrade() -> None:
    # Plain ALTER TABLE … ADD COLUMN and an index, never a batch copy (see 0008): on SQLite a
    # copy of ``users`` would drop a table that others reference.
    op.add_column("users", sa.Column("username", sa.String(length=32), nullable=True))
    users = sa.table("users", sa.column("id"), sa.column("email"), sa.column("username"))
    bind = op.get_bind()
    taken: set[str] = set()
    for user_id, email in bind.execute(sa.select(users.c.id, users.c.email).order_by(users.c.id)):
        bind.execute(
            users.update().where(users.c.id == user_id).values(username=_name(email, taken))
        )
    op.create_index("ix_users_username", "users", ["username"], unique=True)
    op.create_table(
        "ssh_keys",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("public_key", sa.String(length=4096), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_ssh_keys_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ssh_keys")),
        sa.UniqueConstraint("user_id", "fingerprint", name=op.f("uq_ssh_keys_user_id")),
    )
    op.create_index(op.f("ix_ssh_keys_user_id"), "ssh_keys", ["user_id"])
    op.create_table(
        "sftp_passwords",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("server_id", sa.Uuid(), nullable=False),
        sa.Column("secret", sa.String(length=512), nullable=False),
        sa.Column("agent_hash", sa.String(length=256), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_sftp_passwords_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["server_id"],
            ["servers.id"],
            name=op.f("fk_sftp_passwords_server_id_servers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sftp_passwords")),
        sa.UniqueConstraint("user_id", "server_id", name=op.f("uq_sftp_passwords_user_id")),
    )
    op.create_index(op.f("ix_sftp_passwords_user_id"), "sftp_passwords", ["user_id"])
    op.create_index(op.f("ix_sftp_passwords_server_id"), "sftp_passwords", ["server_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_sftp_passwords_server_id"), table_name="sftp_passwords")
    op.drop_index(op.f("ix_sftp_passwords_user_id"), table_name="sftp_passwords")
    op.drop_table("sftp_passwords")
    op.drop_index("ix_ssh_keys_user_id", table_name="ssh_keys")
    op.drop_table("ssh_keys")
    op.drop_index("ix_users_username", table_name="users")
    op.drop_column("users", "username")
