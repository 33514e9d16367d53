"""locations allocations blueprints servers

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 20:04:09.503866
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "blueprints",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("images", sa.JSON(), nullable=False),
        sa.Column("startup", sa.Text(), nullable=False),
        sa.Column("stop", sa.JSON(), nullable=False),
        sa.Column("install", sa.JSON(), nullable=True),
        sa.Column("variables", sa.JSON(), nullable=False),
        sa.Column("read_only_root", sa.Boolean(), nullable=False),
        sa.Column("file_denylist", sa.JSON(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_blueprints")),
        sa.UniqueConstraint("name", name=op.f("uq_blueprints_name")),
    )
    op.create_table(
        "locations",
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("description", sa.String(length=255), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_locations")),
        sa.UniqueConstraint("code", name=op.f("uq_locations_code")),
    )
    op.create_table(
        "servers",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("node_id", sa.Uuid(), nullable=False),
        sa.Column("blueprint_id", sa.Uuid(), nullable=False),
        sa.Column("image", sa.String(length=255), nullable=False),
        sa.Column("memory_mib", sa.Integer(), nullable=False),
        sa.Column("swap_mib", sa.Integer(), nullable=False),
        sa.Column("cpu_percent", sa.Integer(), nullable=False),
        sa.Column("disk_mib", sa.Integer(), nullable=False),
        sa.Column("pids_limit", sa.Integer(), nullable=False),
        sa.Column("variables", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("suspended", sa.Boolean(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["blueprint_id"],
            ["blueprints.id"],
            name=op.f("fk_servers_blueprint_id_blueprints"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["node_id"], ["nodes.id"], name=op.f("fk_servers_node_id_nodes"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name=op.f("fk_servers_owner_id_users"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_servers")),
    )
    with op.batch_alter_table("servers", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_servers_node_id"), ["node_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_servers_owner_id"), ["owner_id"], unique=False)

    op.create_table(
        "allocations",
        sa.Column("node_id", sa.Uuid(), nullable=False),
        sa.Column("ip", sa.String(length=45), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("server_id", sa.Uuid(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["node_id"], ["nodes.id"], name=op.f("fk_allocations_node_id_nodes"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["server_id"],
            ["servers.id"],
            name=op.f("fk_allocations_server_id_servers"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_allocations")),
        sa.UniqueConstraint("node_id", "ip", "port", name=op.f("uq_allocations_node_id")),
    )
    with op.batch_alter_table("allocations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_allocations_node_id"), ["node_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_allocations_server_id"), ["server_id"], unique=False)

    op.create_table(
        "subusers",
        sa.Column("server_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("permissions", sa.JSON(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["server_id"],
            ["servers.id"],
            name=op.f("fk_subusers_server_id_servers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_subusers_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subusers")),
        sa.UniqueConstraint("server_id", "user_id", name=op.f("uq_subusers_server_id")),
    )
    with op.batch_alter_table("subusers", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_subusers_server_id"), ["server_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_subusers_user_id"), ["user_id"], unique=False)

    with op.batch_alter_table("nodes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("location_id", sa.Uuid(), nullable=True))
        batch_op.add_column(
            sa.Column("memory_mib", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("disk_mib", sa.Integer(), nullable=False, server_default="0"))
        batch_op.create_index(batch_op.f("ix_nodes_location_id"), ["location_id"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_nodes_location_id_locations"),
            "locations",
            ["location_id"],
            ["id"],
            ondelete="RESTRICT",
        )


def downgrade() -> None:
    with op.batch_alter_table("nodes", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_nodes_location_id_locations"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_nodes_location_id"))
        batch_op.drop_column("disk_mib")
        batch_op.drop_column("memory_mib")
        batch_op.drop_column("location_id")

    with op.batch_alter_table("subusers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_subusers_user_id"))
        batch_op.drop_index(batch_op.f("ix_subusers_server_id"))

    op.drop_table("subusers")
    with op.batch_alter_table("allocations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_allocations_server_id"))
        batch_op.drop_index(batch_op.f("ix_allocations_node_id"))

    op.drop_table("allocations")
    with op.batch_alter_table("servers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_servers_owner_id"))
        batch_op.drop_index(batch_op.f("ix_servers_node_id"))

    op.drop_table("servers")
    op.drop_table("locations")
    op.drop_table("blueprints")
