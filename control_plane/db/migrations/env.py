"""Alembic environment: runs on the connection :mod:`control_plane.db.migrate` hands it."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from control_plane.db.models import Base

config = context.config
target_metadata = Base.metadata


def run_on(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # The lists' version triggers (0028, 0031) are deferred to the commit; a
            # migration's writes would leave their events pending, and PostgreSQL refuses
            # to ALTER a table with pending events — a later migration of the same upgrade
            # that changes a table an earlier one wrote to. Fired at once here instead.
            connection.exec_driver_sql("SET CONSTRAINTS ALL IMMEDIATE")
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `stellar-cp migrate`, which supplies the connection")
run_on(connection)
