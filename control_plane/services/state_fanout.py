"""Server state changes reach the consoles open on every replica.

A state change is recorded by one replica (the one following the node's event stream, or
the one that ran a power action); consoles may be open on any replica. Each ``server.state``
domain event is therefore fanned out:

- on PostgreSQL, with ``NOTIFY`` on :data:`CHANNEL` inside the transaction that records it:
  PostgreSQL delivers it at the commit, to every replica's ``LISTEN`` (this one included),
  and never for a change that was rolled back. Each replica holds one connection of its own
  for ``LISTEN`` and opens it again by itself after an outage; once listening again it reads
  the state of every server with a console open here and tells those consoles (a change
  recorded while it was not listening is not lost; one recorded just after ``LISTEN`` may
  be told twice);
- on SQLite (one control plane), in this process, after the commit.

Each console open on the server then gets the recorded state (:meth:`ConsoleSessions.push_state`).
The same channel closes consoles on every replica when a sub-user's access changes or a server
is suspended (the acting replica closes its own after the commit, as before).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any, Final

import asyncpg
import structlog
from aiohttp import web
from sqlalchemy import event as sa_event
from sqlalchemy import select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane import background
from control_plane.db.models import Server
from control_plane.keys import (
    CONSOLES,
    ENGINE,
    METRICS,
    SETTINGS,
    STATE_FANOUT,
    STATEMENT_READER,
)
from control_plane.services.domain_events import SERVER_STATE, DomainEvent

log = structlog.get_logger("state_fanout")
CHANNEL: Final = "stellar_consoles"
# The sessions' ``info`` key under which the app's fan-out is found (SQLite's in-process path).
FANOUT: Final = "stellar.state_fanout"
CHECK_SECONDS: Final = 5.0
RECONNECT_SECONDS: Final = 1.0


class StateFanout:
    """Hands recorded state changes to this replica's consoles."""

    def __init__(self, app: web.Application) -> None:
        self._app = app
        self.listening = asyncio.Event()
        self._closing: set[asyncio.Task[None]] = set()
        # Who sent a close: the acting replica has closed its own consoles already (after the
        # commit, in the request), and a second close racing the first one's handshake could
        # cost the client its close code.
        self.replica_id = uuid.uuid4().hex

    def deliver(self, payload: str) -> None:
        """One notification as published (JSON): a state change (server, state, previous),
        or consoles to close (``close``: server, and user unless all of the server's)."""
        try:
            change = json.loads(payload)
            server_id = uuid.UUID(str(change["server"]))
            if change.get("close"):
                self._close(server_id, change.get("user"), change.get("from"))
                return
            state, previous = str(change["state"]), change.get("previous")
        except (ValueError, KeyError, TypeError, AttributeError):
            log.warning("unreadable console notification", payload=payload[:200])
            return
        consoles = self._app.get(CONSOLES)
        if consoles is not None:
            consoles.push_state(server_id, state, None if previous is None else str(previous))

    def _close(self, server_id: uuid.UUID, user: Any, sender: Any) -> None:
        """Close the consoles a close notification names (unless this replica sent it)."""
        consoles = self._app.get(CONSOLES)
        if consoles is None or sender == self.replica_id:
            return
        closing = (
            consoles.close_server(server_id)
            if user is None
            else consoles.close_for(server_id, uuid.UUID(str(user)))
        )
        task = asyncio.create_task(closing)
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def listen(self) -> None:
        """``LISTEN`` for as long as the app runs, connecting again after each failure."""
        url = make_url(self._app[SETTINGS].database_url or "").set(drivername="postgresql")
        dsn = url.render_as_string(hide_password=False)
        while True:
            connection: asyncpg.Connection | None = None
            try:
                connection = await asyncio.wait_for(asyncpg.connect(dsn), CHECK_SECONDS)
                await self._serve(connection)
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as err:
                log.info("server state notifications unavailable", error=str(err))
            finally:
                self.listening.clear()
                self._app[METRICS].state_notifications.set(0)
                if connection is not None:
                    connection.terminate()
            await asyncio.sleep(RECONNECT_SECONDS)

    async def _serve(self, connection: asyncpg.Connection) -> None:
        ended = asyncio.Event()
        connection.add_termination_listener(lambda _c: ended.set())
        await connection.add_listener(CHANNEL, self._notified)
        self.listening.set()
        self._app[METRICS].state_notifications.set(1)
        log.info("listening for server state changes")
        await self._catch_up()
        while not ended.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ended.wait(), CHECK_SECONDS)
            if not ended.is_set():
                # A connection that died silently (no FIN) is noticed here.
                await asyncio.wait_for(connection.fetchval("SELECT 1"), CHECK_SECONDS)

    async def _catch_up(self) -> None:
        """Tell this replica's consoles their server's state as recorded now: what changed
        while nobody here listened (after ``LISTEN``, so nothing later is missed)."""
        consoles = self._app.get(CONSOLES)
        servers = consoles.open_servers() if consoles is not None else set()
        if consoles is None or not servers:
            return
        statement = select(Server.id, Server.state).where(Server.id.in_(servers))
        try:
            rows = await self._app[STATEMENT_READER].rows(statement, {})
        except Exception as err:  # the database went again: the next LISTEN catches up
            log.warning("consoles not caught up with server states", error=str(err)[:300])
            return
        for server_id, state in rows:
            consoles.push_state(server_id, state, None)
        log.info("consoles caught up with server states", servers=len(rows))

    def _notified(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        self.deliver(payload)


# Audited actions after which a user's (or everyone's) consoles on the server close at once.
# The replica that acts closes its own after the commit; these reach the other replicas.
_CLOSES_USER: Final = frozenset({"server.subuser.updated", "server.subuser.deleted"})
_CLOSES_ALL: Final = frozenset({"server.suspended"})


async def on_event(db: AsyncSession, event: DomainEvent) -> None:
    """Domain-event subscriber: publish ``server.state`` (and console closes) with the
    transaction that records it."""
    if event.target_id is None:
        return
    postgres = db.get_bind().dialect.name == "postgresql"
    if event.action in _CLOSES_USER | _CLOSES_ALL:
        fanout = db.info.get(FANOUT)
        if postgres and isinstance(fanout, StateFanout):
            user = event.details.get("user") if event.action in _CLOSES_USER else None
            close = {"close": True, "server": event.target_id, "user": user}
            await _notify(db, json.dumps({**close, "from": fanout.replica_id}))
        return
    if event.action != SERVER_STATE:
        return
    payload = json.dumps(
        {
            "server": event.target_id,
            "state": event.details.get("state"),
            "previous": event.details.get("previous"),
        }
    )
    if postgres:
        await _notify(db, payload)
        return
    fanout = db.info.get(FANOUT)
    if isinstance(fanout, StateFanout):
        loop = asyncio.get_running_loop()
        sa_event.listen(
            db.sync_session,
            "after_commit",
            lambda _session: loop.call_soon(fanout.deliver, payload),
            once=True,
        )


async def _notify(db: AsyncSession, payload: str) -> None:
    """Delivered at the commit to every replica's LISTEN; never if rolled back."""
    await db.execute(text("SELECT pg_notify(:channel, :payload)"), {
        "channel": CHANNEL, "payload": payload,
    })  # fmt: skip


async def state_fanout_ctx(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: on PostgreSQL, listen for every replica's state changes."""
    task = None
    if app[ENGINE].dialect.name == "postgresql":
        task = asyncio.create_task(app[STATE_FANOUT].listen(), name="state-fanout")
    yield
    if task is not None:
        await background.stop(task)
