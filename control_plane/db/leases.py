"""Leases: "this replica, and no other, does X" for as long as it is alive.

Used for the nodes' event streams (one follower per node across replicas), the node-health
poll, and each pass of the jobs that run once across replicas (:meth:`LeaseKeeper.for_run`:
mail, webhook-log pruning, retention). On PostgreSQL a
lease is a session-level advisory lock held on one connection of this replica's own, which
holds all of its leases. What ends a lease without the holder's help:

- the holder dies (kill -9, OOM): its socket closes, PostgreSQL ends the session at once and
  the locks are free;
- the holder is frozen (SIGSTOP) or cut off from the database by the network: its socket
  stays open, so PostgreSQL would keep the locks for ever. The connection therefore sets
  ``idle_session_timeout`` (and ``idle_in_transaction_session_timeout``: stopped inside a
  transaction, a session is not "idle") to :data:`EXPIRY_SECONDS` and the holder renews it (a
  query) every :data:`RENEW_SECONDS`; a holder that stops renewing loses its session, and its
  locks, within the expiry, whatever happened to it. The session runs each statement on its
  own (autocommit): no transaction is left open between two round trips.

Claims are batched: the names this replica asks for at about the same moment are tried in one
statement (a replica standing by for fifty nodes asks for each every two seconds; one
statement per name was a twentieth of its CPU in the fleet bench).

Each replica's lease session is named (``application_name``): :meth:`LeaseKeeper.replicas`
counts the live ones, so that followers of many things can take a fair share each
(``control_plane/nodes/events.py``). A replica that cannot do its share (it reaches the
database but not the nodes) renames its session (:meth:`LeaseKeeper.count_me`) and is not
counted until it can; :meth:`LeaseKeeper.held_elsewhere` tells which names other replicas
hold.

The holder fences itself: a lease is :meth:`Lease.valid` only while its last renewal is
younger than the expiry (measured on the monotonic clock, which goes on while a process is
stopped), so a holder that wakes up from a freeze stops acting before it hears that its
session is gone. SQLite means one control plane: every lease is granted and never lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, Final, TypeVar

import structlog
from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from control_plane import background

log = structlog.get_logger("leases")
T = TypeVar("T")
# How many leases of a group a claim round may grant (see LeaseKeeper.try_acquire).
Room = Callable[[], int]
RENEW_SECONDS: Final = 1.5
# The name of each replica's lease session, as PostgreSQL lists it; of one that asks not to
# be counted (count_me).
SESSION_NAME: Final = "stellar-leases"
ASIDE_NAME: Final = "stellar-leases-aside"
EXPIRY_SECONDS: Final = 6.0
# Each renewal asks the database's clock too: this replica's clock minus PostgreSQL's,
# measured at the middle of the round trip (``LeaseKeeper.clock_offset``). Node clock
# offsets, mail claims and webhook delivery leases go by the replica's clock: one this far
# off is said in the log (and alerted on, ``stellar_replica_clock_offset_seconds``).
RENEWAL: Final = "SELECT extract(epoch FROM clock_timestamp())::float8"
CLOCK_WARNING_SECONDS: Final = 2.0
# A holder stops acting this long before the database may give its lease to another.
MARGIN_SECONDS: Final = 1.0


def lock_id(name: str) -> int:
    """The advisory lock key of a name."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


class Lease:
    """One held lease: ``lost`` is set when it ends without a release."""

    def __init__(self, keeper: LeaseKeeper, name: str, session: int = 0) -> None:
        self.name = name
        self.session = session  # the keeper's session it is held on
        self.lost = asyncio.Event()
        self._keeper = keeper

    def valid(self) -> bool:
        """Whether this replica may still act under the lease (see the module's fencing)."""
        return not self.lost.is_set() and self._keeper.fresh(self.session)

    async def confirm(self) -> bool:
        """Ask the database now whether the lease is still held (before a job's run: the
        run then starts only under a live lease)."""
        return await self._keeper.confirm(self)

    async def release(self) -> None:
        await self._keeper.release(self)


class LeaseKeeper:
    """This replica's leases and the one connection that holds them."""

    def __init__(self, engine: AsyncEngine, *, wall_clock: Callable[[], float] = time.time) -> None:
        self._engine = engine
        self._wall_clock = wall_clock
        # This replica's clock minus the database's, at the last renewal (None: not measured,
        # or SQLite).
        self.clock_offset: float | None = None
        self._postgres = engine.dialect.name == "postgresql"
        self._connection: AsyncConnection | None = None
        self._guard = asyncio.Lock()  # one statement at a time on the connection
        self._held: dict[str, Lease] = {}
        # Names asked for and not yet tried, those being tried, and the task that tries them.
        self._wanted: dict[str, asyncio.Future[Lease | None]] = {}
        self._trying: dict[str, asyncio.Future[Lease | None]] = {}
        self._rooms: dict[str, Room | None] = {}
        self._claiming: asyncio.Task[None] | None = None
        # Statements run to their end even when their caller is cancelled (see _alone).
        self._unfinished: set[asyncio.Task[Any]] = set()
        self._renewed_at = 0.0
        self._task: asyncio.Task[None] | None = None
        # Each session opened gets the next number (a lease is held on one of them); when the
        # current one opened; the replicas counted last.
        self._session = 0
        self._opened_at = 0.0
        self._counted = 1
        self._name = SESSION_NAME

    def fresh(self, session: int | None = None) -> bool:
        """Whether the lease session (``session``, if given, still the one of now) was
        renewed recently enough to act under its leases."""
        if not self._postgres:
            return True
        if session is not None and session != self._session:
            return False
        return time.monotonic() - self._renewed_at < EXPIRY_SECONDS - MARGIN_SECONDS

    @property
    def shared(self) -> bool:
        """Whether other replicas may hold leases too (PostgreSQL; SQLite has one)."""
        return self._postgres

    def start(self) -> None:
        if self._postgres:
            self._task = asyncio.create_task(self._renew(), name="lease-renewal")

    async def open(self) -> None:
        """Open the lease session now (a replica that starts is counted by the others from
        then on); a database not reachable now is tried again at the first claim."""
        if not self._postgres:
            return
        await self._alone(self._open)

    async def _open(self) -> None:
        async with self._guard:
            if await self._query("SELECT 1", connect=True) is None:
                log.warning("lease session not opened yet: tried again at the first claim")

    async def close(self) -> None:
        # Stopped between two statements: one cut short would fail the unlocks still to come.
        async with self._guard:
            for task in (self._task, self._claiming):
                if task is not None:
                    task.cancel()
        for task in (self._task, self._claiming):
            if task is not None:
                await background.stop(task)
        for answer in self._wanted.values():
            answer.cancel()
        self._wanted.clear()
        self._rooms.clear()
        await asyncio.gather(*self._unfinished, return_exceptions=True)
        async with self._guard:
            await self._drop("shutting down")

    async def try_acquire(self, name: str, *, room: Room | None = None) -> Lease | None:
        """The lease ``name`` if no other replica holds it (nor this one already, nor asks
        for it now). Tried with every other name asked for meanwhile, in one statement.
        ``room``: of the names asked for with one ``room`` (equal callables), a round grants
        at most ``room()`` (free ones, at random; SQLite grants every one)."""
        if name in self._held or name in self._wanted or name in self._trying:
            return None
        if not self._postgres:
            self._held[name] = lease = Lease(self, name)
            return lease
        answer = self._wanted[name] = asyncio.get_running_loop().create_future()
        self._rooms[name] = room
        if self._claiming is None or self._claiming.done():
            self._claiming = asyncio.create_task(self._claim(), name="lease-claims")
        try:
            # Shielded: a caller that goes away does not cut a statement short for the others.
            return await asyncio.shield(answer)
        except asyncio.CancelledError:
            if self._wanted.get(name) is answer:
                del self._wanted[name]  # not tried yet
                self._rooms.pop(name, None)
            else:
                answer.add_done_callback(self._give_back)  # being tried, or tried
            raise

    def _give_back(self, answer: asyncio.Future[Lease | None]) -> None:
        """A lease granted to a caller that went away is released."""
        if answer.cancelled() or (lease := answer.result()) is None:
            return
        giving_back = asyncio.create_task(self.release(lease))
        self._unfinished.add(giving_back)
        giving_back.add_done_callback(self._unfinished.discard)

    async def _alone(self, work: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """``work`` (statements on the lease session) run to its end even if the caller is
        cancelled (a follower whose node was removed, a replica stopping): a statement cut
        short leaves the session unusable, and the next one drops it with every lease on it."""
        task = asyncio.create_task(work())
        self._unfinished.add(task)
        task.add_done_callback(self._unfinished.discard)
        return await asyncio.shield(task)

    async def _claim(self) -> None:
        """Try every name asked for, in one statement per round, until none is waiting."""
        try:
            while self._wanted:
                async with self._guard:
                    if not self._wanted:
                        break  # every caller went away while this waited
                    self._trying, self._wanted = self._wanted, {}
                    await self._claim_round(self._trying)
                    self._trying = {}
        finally:
            for answer in self._trying.values():
                answer.cancel()  # this keeper is closing
            self._trying = {}

    async def _claim_round(self, wanted: dict[str, asyncio.Future[Lease | None]]) -> None:
        groups: dict[Room | None, list[str]] = {}
        for name in wanted:
            groups.setdefault(self._rooms.pop(name, None), []).append(name)
        limits: dict[Room | None, int] = {}
        for room, names in groups.items():
            try:
                limits[room] = len(names) if room is None else min(int(room()), len(names))
            except Exception:
                log.exception("a lease claim's room failed; none granted for it this round")
                limits[room] = 0
        granted: set[str] = set()
        session = self._session
        for room, names in groups.items():
            if limits[room] <= 0:
                continue
            keys = {lock_id(name): name for name in random.sample(names, len(names))}
            # PostgreSQL tries the rows one by one as LIMIT pulls them: no lock past it.
            rows = await self._query(
                "SELECT key FROM unnest(CAST(:keys AS bigint[])) AS key"
                " WHERE pg_try_advisory_lock(key) LIMIT :limit",
                {"keys": list(keys), "limit": limits[room]},
                connect=True,
            )
            if rows is None:
                granted.clear()  # the session failed: what it granted ended with it
                break
            if self._session != session:
                granted.clear()  # granted on an earlier session, which is gone
                session = self._session
            granted.update(keys[key] for (key,) in rows)
        if self._connection is None or session != self._session:
            granted.clear()
        for name, answer in wanted.items():
            lease = None
            if name in granted:
                self._held[name] = lease = Lease(self, name, session)
            answer.set_result(lease)

    @contextlib.asynccontextmanager
    async def for_run(self, name: str) -> AsyncIterator[Lease | None]:
        """The lease ``name`` for one pass of a job that runs on one replica at a time, or
        None when another replica (or this one) runs it now; given back after the pass. A
        pass whose steps must not be done twice checks :meth:`Lease.valid` before each: a
        replica frozen mid-pass loses the lease within the expiry and the job goes on
        elsewhere, and when it wakes it stops there."""
        lease = await self.try_acquire(name)
        try:
            yield lease
        finally:
            if lease is not None:
                await lease.release()

    def held(self, prefix: str) -> int:
        """How many leases whose name starts with ``prefix`` this replica holds now."""
        return sum(1 for name in self._held if name.startswith(prefix))

    async def replicas(self) -> int | None:
        """How many replicas hold a lease session on this database now, this one included
        (at least 1), or None if the database cannot say now. A replica that died is gone
        from the count at once; a frozen one when its session expires. For a moment after
        this session opened (PostgreSQL back after an outage: the others open theirs again
        at their next claim), a count lower than the last one is not believed yet."""
        if not self._postgres:
            return 1
        return await self._alone(self._count_replicas)

    @property
    def counted(self) -> bool:
        """Whether this replica asked to be counted (the default; :meth:`count_me`)."""
        return self._name == SESSION_NAME

    async def held_elsewhere(self, names: list[str]) -> set[str] | None:
        """Which of ``names`` another replica holds now (None: the database cannot say now;
        SQLite: none)."""
        if not self._postgres or not names:
            return set()
        return await self._alone(lambda: self._held_elsewhere(names))

    async def _held_elsewhere(self, names: list[str]) -> set[str] | None:
        # An advisory lock on a bigint key is listed as its high and low 32 bits.
        keys = {(lock_id(n) >> 32 & 0xFFFFFFFF, lock_id(n) & 0xFFFFFFFF): n for n in names}
        async with self._guard:
            rows = await self._query(
                "SELECT classid::bigint AS classid, objid::bigint AS objid FROM pg_locks"
                " WHERE locktype = 'advisory' AND objsubid = 1 AND granted"
                " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                " AND pid <> pg_backend_pid()",
                connect=True,
            )
        if rows is None:
            return None
        locked = {(int(row.classid), int(row.objid)) for row in rows}
        return {name for key, name in keys.items() if key in locked}

    async def count_me(self, counted: bool) -> None:
        """Whether the other replicas count this one in :meth:`replicas` from now on (a new
        session is named the same). On a database that cannot be reached now, the session
        is gone anyway: the next one opens under the name asked for."""
        self._name = SESSION_NAME if counted else ASIDE_NAME
        if self._postgres:
            await self._alone(self._rename)

    async def _rename(self) -> None:
        async with self._guard:
            await self._query(
                "SELECT set_config('application_name', :name, false)", {"name": self._name}
            )

    async def _count_sessions(self) -> int | None:
        async with self._guard:
            rows = await self._query(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND application_name = :name",
                {"name": SESSION_NAME},
                connect=True,
            )
        return int(rows[0][0]) if rows else None

    async def _count_replicas(self) -> int | None:
        sessions = await self._count_sessions()
        if sessions is None:
            return None
        counted = max(1, sessions)
        young = time.monotonic() - self._opened_at < EXPIRY_SECONDS
        if counted < self._counted and young:
            return self._counted
        self._counted = counted
        return counted

    async def confirm(self, lease: Lease) -> bool:
        if self._held.get(lease.name) is not lease:
            return False
        if not self._postgres:
            return True
        return await self._alone(lambda: self._confirm(lease))

    async def _confirm(self, lease: Lease) -> bool:
        async with self._guard:
            if await self._query("SELECT 1") is None:
                return False
        return lease.valid()

    async def release(self, lease: Lease) -> None:
        if self._held.get(lease.name) is not lease:
            return
        del self._held[lease.name]
        if not self._postgres or self._connection is None:
            return
        await self._alone(lambda: self._unlock(lease))

    async def _unlock(self, lease: Lease) -> None:
        async with self._guard:
            if lease.session != self._session:
                return  # that session is gone, and its locks with it (the name may be held
                # again, on the session of now)
            await self._query("SELECT pg_advisory_unlock(:id)", {"id": lock_id(lease.name)})

    async def _query(
        self, sql: str, parameters: dict[str, Any] | None = None, *, connect: bool = False
    ) -> list[Row[Any]] | None:
        """One statement on the lease session (the caller holds the guard), committed; its
        rows, or None when there is no session (and ``connect`` is not asked) or it failed
        — a failed session is dropped with every lease on it. A statement that succeeds
        renews the session."""
        if self._connection is None and not connect:
            return None
        try:
            async with asyncio.timeout(RENEW_SECONDS * 2):
                connection = await self._connect()
                rows = list(await connection.execute(text(sql), parameters or {}))
                await connection.commit()
        except Exception as err:
            await self._drop(f"{type(err).__name__}: {err}")
            return None
        self._renewed_at = time.monotonic()
        return rows

    async def _connect(self) -> AsyncConnection:
        if self._connection is not None:
            return self._connection
        connection = await self._engine.connect()
        try:
            # Each statement on its own, with no BEGIN or COMMIT round trip around it; and
            # whole seconds in milliseconds: PostgreSQL ends the session (and frees its locks)
            # when this replica stops renewing, whether it stopped between two statements or
            # (in a transaction opened by whatever reason) inside one.
            await connection.execution_options(isolation_level="AUTOCOMMIT")
            expiry = int(EXPIRY_SECONDS * 1000)
            await connection.execute(text(f"SET idle_session_timeout = {expiry}"))
            await connection.execute(text(f"SET idle_in_transaction_session_timeout = {expiry}"))
            await connection.execute(
                text("SELECT set_config('application_name', :name, false)"), {"name": self._name}
            )
            await connection.commit()
        except BaseException:
            await connection.invalidate()
            raise
        self._connection = connection
        self._session += 1
        self._opened_at = time.monotonic()
        return connection

    async def _drop(self, why: str) -> None:
        """Forget the connection (never back to the pool: it carries the timeout and the
        locks); every lease it held is lost."""
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.invalidate()
        if self._held:
            log.warning("leases lost", count=len(self._held), reason=why)
        for lease in self._held.values():
            lease.lost.set()
        self._held.clear()

    def _measured(self, offset: float) -> None:
        was_off = self.clock_offset is not None and abs(self.clock_offset) > CLOCK_WARNING_SECONDS
        self.clock_offset = offset
        is_off = abs(offset) > CLOCK_WARNING_SECONDS
        if is_off and not was_off:
            log.warning(
                "this replica's clock is off the database's: check NTP (node clock offsets,"
                " mail claims and webhook delivery leases go by this clock)",
                offset_seconds=round(offset, 3),
            )
        elif was_off and not is_off:
            log.info("this replica's clock agrees with the database's again")

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(RENEW_SECONDS)
            async with self._guard:
                if self._connection is None:
                    continue
                try:
                    async with asyncio.timeout(RENEW_SECONDS * 2):
                        sent = self._wall_clock()
                        answer = await self._connection.execute(text(RENEWAL))
                        received = self._wall_clock()
                        await self._connection.commit()
                except Exception as err:
                    await self._drop(f"{type(err).__name__}: {err}")
                    continue
                self._measured((sent + received) / 2 - float(answer.scalar_one()))
                if not self.fresh():
                    # We were frozen past the expiry: the database may have given the leases
                    # away already; start again from nothing.
                    await self._drop("renewal came too late (was this process stopped?)")
                    continue
                self._renewed_at = time.monotonic()
