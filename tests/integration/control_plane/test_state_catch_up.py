"""A replica whose ``LISTEN`` connection was lost tells its open consoles what changed
meanwhile, once it listens again (PostgreSQL: SQLite serves one process, nothing to miss).

The change is written straight into the database while the replica is not listening, as
another replica's would be: no notification reaches this one.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from sqlalchemy import text, update

from control_plane.db.models import Server
from control_plane.db.session import transaction
from control_plane.keys import CONSOLES, ENGINE, SESSIONS, STATE_FANOUT
from tests.support.world import World


class _Socket:
    """What ConsoleSessions asks of a console socket."""

    closed = False


async def test_consoles_hear_a_change_recorded_while_the_replica_was_not_listening(
    world: World,
) -> None:
    app = world.panel.server.app
    if app[ENGINE].dialect.name != "postgresql":
        pytest.skip("SQLite has no LISTEN: one process, nothing to miss")
    fanout = app[STATE_FANOUT]
    async with asyncio.timeout(10):
        await fanout.listening.wait()
    server_id = uuid.UUID(world.ids["alice_server"])
    other = uuid.UUID(world.ids["bob_server"])
    told: list[tuple[Any, ...]] = []

    async def on_state(state: str, previous: str | None) -> None:
        told.append((state, previous))

    with app[CONSOLES].register(server_id, uuid.uuid4(), _Socket(), on_state):  # type: ignore[arg-type]
        async with transaction(app[SESSIONS]) as db:
            await db.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND query LIKE 'LISTEN%'"
                )
            )
        async with asyncio.timeout(10):
            while fanout.listening.is_set():
                await asyncio.sleep(0.01)
        async with transaction(app[SESSIONS]) as db:
            for changed in (server_id, other):
                await db.execute(update(Server).where(Server.id == changed).values(state="running"))
        async with asyncio.timeout(15):
            await fanout.listening.wait()
            while not told:
                await asyncio.sleep(0.01)
        assert told == [("running", None)]
