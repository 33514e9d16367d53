"""mail: the outbox, mailed tokens, invitations, alert preferences, known devices

Users get ``email_verified_at``; the users that exist already count as verified (their
addresses were typed by an administrator or by themselves before verification existed), so
turning STELLAR_REQUIRE_EMAIL_VERIFICATION on locks nobody out.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def _user_fk(table: str, ondelete: str = "CASCADE", column: str = "user_id") -> sa.Constraint:
    return sa.ForeignKeyConstraint(
        [column], ["users.id"], name=op.f(f"fk_{table}_{column}_users"), ondelete=ondelete
    )


def upgrade() -> None:
    # Plain ADD COLUMN, never a batch copy (see 0008 and 0010).
    op.add_column("users", sa.Column("email_verified_at", sa.DateTime(timezone=True)))
    users = sa.table("users", sa.column("created_at"), sa.column("email_verified_at"))
    op.execute(users.update().values(email_verified_at=users.c.created_at))
    op.create_table(
        "mail_outbox",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("to_address", sa.String(length=254), nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=False),
        sa.Column("text_body", sa.Text(), nullable=False),
        sa.Column("html_body", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=512), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mail_outbox")),
    )
    op.create_index(op.f("ix_mail_outbox_next_attempt_at"), "mail_outbox", ["next_attempt_at"])
    op.create_table(
        "mail_tokens",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        _user_fk("mail_tokens"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mail_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_mail_tokens_token_hash")),
    )
    op.create_index(op.f("ix_mail_tokens_user_id"), "mail_tokens", ["user_id"])
    op.create_table(
        "invitations",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("server_id", sa.Uuid(), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("permissions", sa.JSON(), nullable=False),
        sa.Column("invited_by", sa.Uuid(), nullable=True),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["server_id"],
            ["servers.id"],
            name=op.f("fk_invitations_server_id_servers"),
            ondelete="CASCADE",
        ),
        _user_fk("invitations", "SET NULL", "invited_by"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invitations")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_invitations_token_hash")),
    )
    op.create_index(op.f("ix_invitations_server_id"), "invitations", ["server_id"])
    op.create_table(
        "alert_preferences",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("server_crashed", sa.Boolean(), nullable=False),
        sa.Column("backup_failed", sa.Boolean(), nullable=False),
        sa.Column("disk_full", sa.Boolean(), nullable=False),
        sa.Column("new_sign_in", sa.Boolean(), nullable=False),
        _user_fk("alert_preferences"),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_alert_preferences")),
    )
    op.create_table(
        "known_devices",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        _user_fk("known_devices"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_known_devices")),
        sa.UniqueConstraint("user_id", "fingerprint", name=op.f("uq_known_devices_user_id")),
    )
    op.create_index(op.f("ix_known_devices_user_id"), "known_devices", ["user_id"])


def downgrade() -> None:
    op.drop_table("known_devices")
    op.drop_table("alert_preferences")
    op.drop_table("invitations")
    op.drop_table("mail_tokens")
    op.drop_table("mail_outbox")
    # DROP COLUMN in place (SQLite ≥ 3.35), no batch copy of ``users``.
    op.drop_column("users", "email_verified_at")
