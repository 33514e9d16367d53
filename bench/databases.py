"""Throwaway PostgreSQL databases for the benchmarks (created and dropped per run)."""

from __future__ import annotations

import secrets

from sqlalchemy.engine import make_url


def _admin_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def create_postgres_database(admin_url: str) -> str:
    import asyncpg

    name = f"stellar_bench_{secrets.token_hex(6)}"
    connection = await asyncpg.connect(_admin_dsn(admin_url))
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


async def drop_postgres_database(admin_url: str, url: str) -> None:
    import asyncpg

    name = make_url(url).database
    connection = await asyncpg.connect(_admin_dsn(admin_url))
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()
