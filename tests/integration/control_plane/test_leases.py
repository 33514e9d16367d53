"""Leases on PostgreSQL (control_plane/db/leases.py): two replicas compete for a job on every
one of 100 ticks; it runs exactly once per tick, and when the holder's database session dies
the other replica takes the job over without a tick run twice or skipped."""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy.engine import make_url
from structlog.testing import capture_logs

from control_plane.db.engine import create_engine
from control_plane.db.leases import EXPIRY_SECONDS, RENEW_SECONDS, Lease, LeaseKeeper, lock_id
from control_plane.observability.metrics import ControlPlaneMetrics
from tests.conftest import _create_postgres_database, _drop_postgres_database

TICKS = 100
JOB = "test-job"


@pytest.fixture
async def database_url() -> AsyncIterator[str]:
    """PostgreSQL only: SQLite has one control plane, whose leases are always granted."""
    url = await _create_postgres_database()
    try:
        yield url
    finally:
        await _drop_postgres_database(url)


@pytest.fixture
async def keepers(database_url: str) -> AsyncIterator[tuple[LeaseKeeper, LeaseKeeper]]:
    """Two replicas' lease keepers, each on an engine of its own (no renewal started)."""
    engines = [create_engine(database_url), create_engine(database_url)]
    first, second = LeaseKeeper(engines[0]), LeaseKeeper(engines[1])
    try:
        yield first, second
    finally:
        for keeper, engine in zip((first, second), engines, strict=True):
            await keeper.close()
            await engine.dispose()


class Replica:
    """One replica's side of the job: its own engine (pool) and lease keeper."""

    def __init__(self, name: str, url: str) -> None:
        self.name = name
        self.engine = create_engine(url)
        self.keeper = LeaseKeeper(self.engine)
        self.lease: Lease | None = None

    async def tick(self, number: int, runs: list[tuple[int, str]]) -> None:
        """What a leader-style job does at each tick: hold the lease or try for it; run only
        under a lease the database has just confirmed."""
        if self.lease is None or self.lease.lost.is_set():
            self.lease = await self.keeper.try_acquire(JOB)
        if self.lease is not None and await self.lease.confirm():
            runs.append((number, self.name))
            await asyncio.sleep(0)  # the other replica's attempt interleaves with the run

    async def close(self) -> None:
        await self.keeper.close()
        await self.engine.dispose()


async def holder_pid(url: str) -> int:
    """The backend holding the job's advisory lock, as PostgreSQL sees it."""
    key = lock_id(JOB)
    connection = await asyncpg.connect(make_url(url).render_as_string(hide_password=False))
    try:
        pid = await connection.fetchval(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " AND classid = $1 AND objid = $2",
            (key >> 32) & 0xFFFFFFFF,
            key & 0xFFFFFFFF,
        )
        assert pid is not None, "nobody holds the job's lock"
        # Waits until the backend is gone (its locks with it), as after a kill -9.
        await connection.execute("SELECT pg_terminate_backend($1, 5000)", pid)
        return int(pid)
    finally:
        await connection.close()


async def test_a_job_runs_exactly_once_per_tick_across_two_replicas_through_a_takeover(
    database_url: str,
) -> None:
    replicas = [Replica("a", database_url), Replica("b", database_url)]
    for replica in replicas:
        replica.keeper.start()
    runs: list[tuple[int, str]] = []
    try:
        for number in range(1, TICKS + 1):
            if number == TICKS // 2 + 1:
                # The holder's session dies (what PostgreSQL sees of a killed replica).
                await holder_pid(database_url)
            # Both replicas compete on every tick, concurrently.
            await asyncio.gather(*(r.tick(number, runs) for r in replicas))
    finally:
        for replica in replicas:
            await replica.close()

    per_tick = Counter(number for number, _ in runs)
    assert sorted(per_tick) == list(range(1, TICKS + 1)), "a tick was skipped"
    assert set(per_tick.values()) == {1}, "a tick ran twice"
    before = {name for number, name in runs if number <= TICKS // 2}
    after = {name for number, name in runs if number > TICKS // 2}
    assert len(before) == 1, before
    assert len(after) == 1, after
    assert before != after, "the job was not taken over"


async def seconds_until_taken(keeper: LeaseKeeper) -> float | None:
    """How long until ``keeper`` gets the job's lease, asking every 0.5 s; None if not
    within the expiry and 5 s."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    while loop.time() - started < EXPIRY_SECONDS + 5:
        if await keeper.try_acquire(JOB) is not None:
            return loop.time() - started
        await asyncio.sleep(0.5)
    return None


async def test_a_frozen_holder_loses_its_lease_within_the_expiry(
    keepers: tuple[LeaseKeeper, LeaseKeeper],
) -> None:
    """A holder that stops renewing (SIGSTOP, a partition: emulated by not letting its renewal
    task run) loses the lease to PostgreSQL's idle_session_timeout, and then knows it."""
    holder, other = keepers
    other.start()  # the holder's renewal never runs: it is "frozen"
    lease = await holder.try_acquire(JOB)
    assert lease is not None
    assert await other.try_acquire(JOB) is None
    took = await seconds_until_taken(other)
    assert took is not None, "the frozen holder kept its lease"
    assert took < EXPIRY_SECONDS + 3
    assert not lease.valid(), "the frozen holder still believes it holds the lease"
    assert not await lease.confirm()
    assert lease.lost.is_set()


async def test_a_holder_frozen_inside_a_transaction_loses_its_lease_within_the_expiry(
    keepers: tuple[LeaseKeeper, LeaseKeeper],
) -> None:
    """Frozen (or cut off) between a statement's BEGIN and its COMMIT, the holder's session
    is "idle in transaction", which idle_session_timeout does not end: the lease was held
    until the process woke up or TCP gave up (hours). It expires like any other. (A CI run
    saw a SIGSTOPped replica keep its node for over 10 s.)"""
    holder, other = keepers
    lease = await holder.try_acquire(JOB)
    assert lease is not None
    connection = holder._connection
    assert connection is not None
    await connection.exec_driver_sql("BEGIN")  # and then nothing more: frozen
    took = await seconds_until_taken(other)
    assert took is not None, "the holder frozen inside a transaction kept its lease"
    assert took < EXPIRY_SECONDS + 3
    assert not lease.valid()


async def test_claims_made_at_once_go_in_one_statement_and_get_only_the_free_names(
    keepers: tuple[LeaseKeeper, LeaseKeeper],
) -> None:
    """A replica standing by for many nodes asks for each; the names asked for together are
    tried together, and each caller gets exactly the lease no other replica holds."""
    holder, other = keepers
    names = [f"node-events:{number}" for number in range(40)]
    held = [await holder.try_acquire(name) for name in names[:15]]
    assert all(lease is not None for lease in held)
    rounds = 0
    real_round = other._claim_round

    async def counted(wanted: dict[str, asyncio.Future[Lease | None]]) -> None:
        nonlocal rounds
        rounds += 1
        await real_round(wanted)

    other._claim_round = counted  # type: ignore[method-assign]
    granted = await asyncio.gather(*(other.try_acquire(name) for name in names))
    assert rounds == 1
    assert [lease is not None for lease in granted] == [False] * 15 + [True] * 25
    # The same names again: what either holds is refused, by the database or the keeper.
    assert await holder.try_acquire(names[20]) is None
    assert await other.try_acquire(names[20]) is None
    assert await other.try_acquire(names[0]) is None
    # A holder's session ends: its names are free to the other at the next claim.
    await holder.close()
    again = await asyncio.gather(*(other.try_acquire(name) for name in names[:15]))
    assert all(lease is not None for lease in again)


async def test_a_claim_whose_caller_went_away_is_given_back(
    keepers: tuple[LeaseKeeper, LeaseKeeper],
) -> None:
    """A follower cancelled while its claim is in flight (its node removed, the replica
    stopping) does not leave a lease held by nobody: the other replica can take it."""
    first, second = keepers
    asking = asyncio.create_task(first.try_acquire(JOB))
    while JOB not in first._trying:
        await asyncio.sleep(0)  # until the claim's statement is under way
    asking.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asking
    loop = asyncio.get_running_loop()
    started, taken = loop.time(), None
    while taken is None and loop.time() - started < 5:
        taken = await second.try_acquire(JOB)
        await asyncio.sleep(0.05)
    assert taken is not None, "the lease granted to a caller that went away stayed held"
    assert await first.try_acquire(JOB) is None


async def test_a_release_cut_short_by_its_caller_costs_no_other_lease(
    keepers: tuple[LeaseKeeper, LeaseKeeper],
) -> None:
    """A follower cancelled while its lease's unlock is on the wire (its node removed, the
    listener stopping) used to leave the lease session half-way through a statement: the
    next statement failed and the replica lost every lease it held."""
    holder, other = keepers
    kept = await holder.try_acquire("kept")
    let_go = await holder.try_acquire("let-go")
    assert kept is not None
    assert let_go is not None
    releasing = asyncio.create_task(let_go.release())
    while not holder._guard.locked():
        await asyncio.sleep(0)  # until the unlock statement is under way
    releasing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await releasing
    assert await kept.confirm(), "the lease session was lost with the cancelled release"
    assert kept.valid()
    assert await other.try_acquire("kept") is None
    assert await other.try_acquire("let-go") is not None, "the released lease stayed held"


async def test_an_unlock_for_a_session_that_ended_does_not_free_the_name_held_again(
    keepers: tuple[LeaseKeeper, LeaseKeeper],
) -> None:
    """A release queued behind a claim, while the session it was held on ended (a failed
    renewal): the claim takes the name again on a new session, and the late unlock must not
    free that new lock (two replicas would then follow one node)."""
    holder, other = keepers

    async def settle() -> None:
        for _ in range(20):
            await asyncio.sleep(0)

    lease = await holder.try_acquire("x")
    assert lease is not None
    async with holder._guard:  # a statement under way on the session
        claiming_y = asyncio.create_task(holder.try_acquire("y"))
        await settle()  # the claim round waits for the session
        releasing = asyncio.create_task(lease.release())
        await settle()  # the unlock waits behind it
        await holder._drop("the renewal failed")  # the session ends, and x's lock
        claiming_x = asyncio.create_task(holder.try_acquire("x"))
        await settle()  # x joins the waiting round
    again, y = await claiming_x, await claiming_y
    await releasing
    assert again is not None, "x was not taken again on the new session"
    assert y is not None
    assert await other.try_acquire("x") is None, "the late unlock freed x's new lock"
    assert await again.confirm()


async def test_a_claim_round_grants_no_more_than_the_room_and_takes_no_other_lock(
    keepers: tuple[LeaseKeeper, LeaseKeeper],
) -> None:
    """A replica at its share of the nodes asks for every free one with room for a few: it
    gets that many, and the others stay free for the replicas below their share."""
    asking, other = keepers
    names = [f"node-events:{number}" for number in range(10)]

    def room_for_three() -> int:
        return 3

    def no_room() -> int:
        return 0

    # One room for the round: the names asked for with it are granted 3 in all.
    granted = await asyncio.gather(*(asking.try_acquire(n, room=room_for_three) for n in names))
    mine = [name for name, lease in zip(names, granted, strict=True) if lease is not None]
    assert len(mine) == 3
    rest = await asyncio.gather(*(other.try_acquire(name) for name in names))
    assert sum(lease is not None for lease in rest) == 7, "a lock past the room was taken"
    none_left = await asyncio.gather(*(asking.try_acquire(n, room=no_room) for n in names))
    assert all(lease is None for lease in none_left)


async def test_a_replica_that_asks_not_to_be_counted_is_not_until_it_asks_again(
    keepers: tuple[LeaseKeeper, LeaseKeeper], database_url: str
) -> None:
    """``count_me(False)``: a replica that cannot do its share (it reaches the database, not
    the nodes) is left out of the others' count, also after its session is opened anew."""
    first, second = keepers
    await first.open()
    await second.open()
    assert await first.replicas() == 2
    await second.count_me(False)
    assert await counted(database_url) == 1
    await second._drop("the database restarted")  # a new session takes the name asked for
    await second.open()
    assert await counted(database_url) == 1
    await second.count_me(True)
    assert await counted(database_url) == 2
    assert await first.replicas() == 2


async def counted(database_url: str) -> int:
    """The lease sessions PostgreSQL lists as counted replicas."""
    connection = await asyncpg.connect(make_url(database_url).render_as_string(hide_password=False))
    try:
        return int(
            await connection.fetchval(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND application_name = 'stellar-leases'"
            )
        )
    finally:
        await connection.close()


async def test_held_elsewhere_names_the_leases_other_replicas_hold(
    keepers: tuple[LeaseKeeper, LeaseKeeper],
) -> None:
    first, second = keepers
    assert lock_id("x") > 0 > lock_id("y")  # keys of either sign
    leases = [await first.try_acquire(name) for name in ("x", "y")]
    names = ["x", "y", "z"]
    assert await second.held_elsewhere(names) == {"x", "y"}
    assert await first.held_elsewhere(names) == set()  # its own are not elsewhere
    for lease in leases:
        assert lease is not None
        await lease.release()
    assert await second.held_elsewhere(names) == set()


async def test_a_replica_clock_off_the_databases_is_measured_said_and_exposed(
    database_url: str,
) -> None:
    """Each renewal measures this replica's clock against PostgreSQL's: a replica 90 s ahead
    reads about +90 (node offsets, mail claims and webhook leases go by its clock), says so
    once in its log, and the metric carries it; back in time, it reads about 0."""
    engine = create_engine(database_url)
    shift = 90.0
    keeper = LeaseKeeper(engine, wall_clock=lambda: time.time() + shift)
    metrics = ControlPlaneMetrics()
    metrics.replica_clock_offset.set_function(
        lambda: math.nan if keeper.clock_offset is None else keeper.clock_offset
    )
    assert math.isnan(_offset_exposed(metrics))
    keeper.start()
    try:
        with capture_logs() as logs:
            await keeper.open()
            async with asyncio.timeout(10):
                while keeper.clock_offset is None:
                    await asyncio.sleep(0.1)
            assert keeper.clock_offset == pytest.approx(shift, abs=1.0)
            assert _offset_exposed(metrics) == pytest.approx(shift, abs=1.0)
            await asyncio.sleep(2 * RENEW_SECONDS)  # more renewals: said once
            shift = 0.0
            async with asyncio.timeout(10):
                while abs(keeper.clock_offset) > 1.0:
                    await asyncio.sleep(0.1)
            assert _offset_exposed(metrics) == pytest.approx(0.0, abs=1.0)
        said = [e["event"] for e in logs if "clock" in e["event"]]
        assert len(said) == 2
        assert "check NTP" in said[0]
        assert "agrees with the database's again" in said[1]
    finally:
        await keeper.close()
        await engine.dispose()


def _offset_exposed(metrics: ControlPlaneMetrics) -> float:
    value = metrics.registry.get_sample_value("stellar_replica_clock_offset_seconds")
    assert value is not None
    return value
