"""Follow every node's event stream and keep the servers' state in the database.

One task per node, under a lease (:mod:`control_plane.db.leases`: one replica listens to a
node at a time; another takes over within seconds when the holder dies or freezes). Each
replica follows its share of the nodes, ceil(nodes / live replicas). Claims are made in
rounds, at the multiples of :data:`CLAIM_SECONDS` on the wall clock (the same moments on
every replica whose clock is kept), each replica's in one statement. Below its share, a
replica asks for free nodes at once and at each round; at it, :data:`AT_SHARE_DELAY` into
each round, having counted the replicas again (one that died or froze is no longer
counted: the survivors are below their new share), for one node a round (so the replicas
below their share take free nodes first, and each at its share one that no one else took);
above it, none; above it and one more (after a restart of the others, or when a replica
joins) it lets the extra go, which the others take up. A node let go resumes on
the next replica from its last event applied, as after a takeover. A replica that cannot
reach the nodes the others follow steps aside, not counted by them, until one answers
(``_unreached_node``). A replica waits one round before its first claims, so that replicas
started together (a fleet's start, not a rolling restart) count each other and do not
first follow every node, then let most go. The socket
is renewed with a fresh command token when the node says it is expiring, and re-opened
with backoff when it drops. Crashes, finished installs and backups, and full disks are
audited. When the node says it dropped events for this stream (a follower that fell
behind), the stream is opened again from the last event applied: the audit-worthy ones are
replayed, the states read again.

The audit-worthy events (crashes, backups, full disks, SFTP logins and failures) are
numbered in the agent's stream and kept there a while. Each is applied in a transaction
that also records it as the node's ``events_cursor``; a follower resumes after the cursor
(a replica restarted, or one taking over from a replica that died), so the events sent
while no one followed are applied once, late, and none twice. A replayed crash is audited
but does not set the state: the read on connecting has the state of now.

A finished install is kept on the server (exit code, seconds, last lines, reason: what
``GET /api/v1/servers/{id}`` shows as ``install``). A failed one leaves the server in the
state ``install_failed``: the node reports it ``offline`` afterwards, which does not
overwrite that until the server installs again.

The node is not trusted to send few events: the audit rows its events add are on a budget
(:class:`AuditBudget`); past it its events still apply, unaudited, and a
``node.events.not_audited`` row says how many (at most one a minute while it lasts).

Resource samples (``stats`` events) are folded into the resource history
(``control_plane/services/resource_history.py``) without a transaction per sample: a
bucket is written once complete, only for servers that are on this node. Their age on
arrival is the stream's lag (``stellar_node_event_stream_lag_seconds``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import math
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Final

import aiohttp
import structlog
from aiohttp import web
from pydantic import BaseModel, ValidationError
from sqlalchemy import select, update

from control_plane import background
from control_plane.api import server_actions
from control_plane.db.leases import Lease
from control_plane.db.models import Node, Server
from control_plane.db.session import transaction
from control_plane.errors import ApiError
from control_plane.keys import LEASES, METRICS, NODE_EVENTS, NODES, SESSIONS, WALL_CLOCK
from control_plane.nodes.transport import NodeUnreachable
from control_plane.schemas.servers import PowerIn
from control_plane.services import audit, resource_history
from control_plane.services.resource_history import Bucket, HistoryRecorder
from control_plane.services.servers.installs import (
    forget_install,
    install_recorded,
    record_install,
    state_after,
)
from control_plane.services.servers.state import change_state
from shared.errors import UpstreamNoAnswer
from shared.node_api import (
    MAX_SEQ,
    BackupEvent,
    CrashEvent,
    DiskFullEvent,
    EventsDropped,
    SftpFailuresEvent,
    SftpLoginEvent,
    StatsEvent,
    StreamStart,
)

log = structlog.get_logger("nodes.events")
STATES = frozenset(
    {"offline", "installing", "starting", "running", "stopping", "crashed", "install_failed"}
)
MAX_BACKOFF_SECONDS = 60.0
RESCAN_SECONDS = 3.0
# How often a replica that does not follow a node asks for its lease: with the lease's
# expiry, what a takeover takes at most.
CLAIM_SECONDS = 2.0
# A replica lets nodes go when it follows more than its share and this many; at its share,
# it asks for free nodes this long into each claim round, and this many a round.
SHARE_SLACK = 1
AT_SHARE_DELAY = 0.5
AT_SHARE_PER_ROUND = 1
NODE_LEASE_PREFIX = "node-events:"
# A node let go is not asked for again this soon by the replica that let it go (unless below
# its share): the others take it up.
LET_GO_SECONDS = 3 * CLAIM_SECONDS
# A replica that follows no node and could not reach this many (different ones; fewer in a
# smaller fleet) since it last opened a stream asks up to PROBED_NODES nodes other replicas
# hold; if none answers, it steps aside, and asks again this often.
UNREACHED_NODES = 2
PROBE_SECONDS = 2 * CLAIM_SECONDS
PROBED_NODES = 3


class LeaseLost(Exception):
    """This replica no longer holds the node's lease: it stops before applying more."""


# A server's disk is "nearly full" from this share of its limit, and stops being so below the
# second (so a disk hovering at the mark is announced once, not at every sample).
NEARLY_FULL = 0.90
NO_LONGER_NEARLY_FULL = 0.85
# The events audited as they come: read as their model (a field no event has is not kept),
# each text cut to this many characters (the node is not trusted to keep them short).
AUDITED: Final[dict[str, type[BaseModel]]] = {
    "crash": CrashEvent,
    "backup": BackupEvent,
    "disk_full": DiskFullEvent,
    "sftp_login": SftpLoginEvent,
}
MAX_AUDITED_TEXT = 255


@dataclass(frozen=True)
class AuditBudget:
    """Audit rows one node's events may add: ``burst`` at once, then ``per_second``.

    Each audited event is a row in a trail that is kept for months; a rooted node sending
    crashes or SFTP logins in a loop would otherwise grow the database without bound. A busy
    node (SFTP logins, crash loops, backups of hundreds of servers) stays well inside it."""

    burst: float = 300.0
    per_second: float = 1.0


AUDIT_BUDGET: Final = AuditBudget()
# While a node is past its budget, how often a row says how many of its events were not audited.
NOT_AUDITED_REPORT_SECONDS: Final = 60.0


class _Allowance:
    """One node's audit budget: a token bucket, and the events it let go unaudited."""

    def __init__(self, budget: AuditBudget, now: float) -> None:
        self.tokens = budget.burst
        self.updated = now
        self.skipped = 0
        self.reported_at: float | None = None

    def take(self, budget: AuditBudget, now: float) -> bool:
        self.tokens = min(budget.burst, self.tokens + (now - self.updated) * budget.per_second)
        self.updated = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def audited(event: BaseModel) -> dict[str, Any]:
    """What the audit trail keeps of a node's event: its own fields, every text cut, a number
    that is none (NaN, Infinity: JSON in Python, not in PostgreSQL or a browser) left out."""
    details = event.model_dump(mode="json", exclude={"type", "server", "last_lines", "seq"})
    return {key: _kept(value) for key, value in details.items()}


def _starts_on_completion(server: Server) -> bool:
    """Whether the server is to start once its first install succeeds (Pterodactyl's
    ``start_on_completion`` at create); True once only: a reinstall does not start it."""
    fields = server.compat_fields or {}
    if not fields.get("start_on_completion"):
        return False
    server.compat_fields = {**fields, "start_on_completion": False}
    return True


def _kept(value: Any) -> Any:
    if isinstance(value, str):
        return value[:MAX_AUDITED_TEXT]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass
class StreamPosition:
    """Where a follower is in a node's stream: the agent's stream (``epoch``), the last
    numbered event applied there (by this follower or one before it), the node's
    ``events_cursor`` as this follower last read or wrote it (``stored``), and the last event
    the agent had published when this follower subscribed (those up to it are replays)."""

    epoch: str | None = None
    applied: int = 0
    start: int = 0
    stored: str | None = None

    @classmethod
    def resuming(cls, cursor: str | None) -> StreamPosition:
        epoch, _, seq = (cursor or "").partition(":")
        if not epoch or not seq.isdigit():
            return cls(stored=cursor)
        return cls(epoch, int(seq), stored=cursor)

    @property
    def cursor(self) -> str | None:
        """What to resume after (None: nothing, for a node no follower has recorded yet)."""
        return None if self.epoch is None else f"{self.epoch}:{self.applied}"

    def started(self, frame: dict[str, Any]) -> bool:
        """The stream's first frame: a stream of another start of the agent begins anew
        (every event it kept is new to us). Whether it was one."""
        try:
            start = StreamStart.model_validate(frame)
        except ValidationError:
            return False
        if start.epoch != self.epoch:
            # A node never recorded: from now on (what it sent before is not replayed: an
            # older control plane may have applied it already).
            self.epoch, self.applied = start.epoch, (start.seq if self.stored is None else 0)
        self.start = start.seq
        return True

    def number(self, event: dict[str, Any]) -> int | None:
        """The event's number in the stream, if it is numbered (and the stream said which)."""
        seq = event.get("seq")
        if self.epoch is None or not isinstance(seq, int) or isinstance(seq, bool):
            return None
        return seq if 1 <= seq <= MAX_SEQ else None


class StreamGap(Exception):
    """The node dropped events for this follower: it resumes after the last one applied."""


class NodeEventListener:
    """Keeps one event subscription per node alive for as long as the app runs."""

    def __init__(
        self,
        app: web.Application,
        *,
        audit_budget: AuditBudget = AUDIT_BUDGET,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._app = app
        self._audit_budget = audit_budget
        self._clock = clock
        self._allowances: dict[uuid.UUID, _Allowance] = {}
        self._tasks: dict[uuid.UUID, asyncio.Task[None]] = {}
        self._urls: dict[uuid.UUID, str] = {}
        # The nodes this replica follows, and how many it may follow (its share of the nodes
        # counted at the last scan; see the module's doc).
        self._following: set[uuid.UUID] = set()
        self._share = math.inf
        self._node_count = 0
        self._let_go: dict[uuid.UUID, float] = {}
        # The share counted again for this round.
        self._recounting: asyncio.Future[None] | None = None
        self._recount_round = -1
        # Servers whose disk was announced nearly full (this replica's memory: a replica
        # that takes a node over may announce it once more).
        self._nearly_full: set[uuid.UUID] = set()
        # The nodes whose stream is open here; those this replica could not reach since it
        # last opened one; whether it stepped aside (_unreached_node), and its probe.
        self._open: set[uuid.UUID] = set()
        self._unreached: set[uuid.UUID] = set()
        self._aside = False
        self._came_back = asyncio.Event()
        self._probing: asyncio.Task[None] | None = None

    @property
    def aside(self) -> bool:
        """Whether this replica stands aside, unable to reach the nodes the others follow."""
        return self._aside

    async def run(self) -> None:
        if self._app[LEASES].shared:
            # Replicas started together count each other before any claims its share.
            await asyncio.sleep(CLAIM_SECONDS)
        while True:
            self._app[METRICS].job_runs.labels("node-events-scan").inc()
            try:
                async with transaction(self._app[SESSIONS]) as db:
                    nodes = {n.id: (n.name, n.url) for n in await db.scalars(select(Node))}
                self._node_count = len(nodes)
                await self._count_share()
                # In an order of this replica's own: replicas started together do not all
                # ask for the same nodes first.
                for node_id, (name, url) in random.sample(list(nodes.items()), len(nodes)):
                    task = self._tasks.get(node_id)
                    followed = self._urls.get(node_id)
                    if task is not None and followed is not None and followed != url:
                        self._stop_following(node_id)  # it moved: follow it at its new address
                        task = None
                    if task is None or task.done():
                        self._urls.pop(node_id, None)  # the follower says where it connects
                        self._tasks[node_id] = asyncio.create_task(
                            self._follow(node_id), name=f"node-events-{name}"
                        )
                self._unreached &= set(nodes)
                for node_id in set(self._tasks) - set(nodes):
                    self._stop_following(node_id)
                    self._tasks.pop(node_id, None)
                    self._urls.pop(node_id, None)
                self._let_extra_go()
            except Exception:
                self._app[METRICS].job_failures.labels("node-events-scan").inc()
                log.exception("node event listener scan failed")
            await asyncio.sleep(RESCAN_SECONDS)

    def _stop_following(self, node_id: uuid.UUID) -> None:
        """Cancel the node's follower (its lease is released as it ends); it no longer
        counts as followed from now on."""
        task = self._tasks.get(node_id)
        if task is not None:
            task.cancel()
        self._following.discard(node_id)

    def _held(self) -> int:
        """The node leases this replica holds (a claim granted counts at once, before its
        follower wakes up to follow)."""
        return self._app[LEASES].held(NODE_LEASE_PREFIX)

    def _below_share(self) -> bool:
        return self._held() < self._share

    def _room(self) -> int:
        """How many nodes this replica's claims of a round may get: up to its share; at it,
        one a round; above it, none (the module's doc)."""
        below = min(self._share, len(self._tasks)) - self._held()  # not yet counted: all
        if below < 0 or self._aside:
            return 0
        return max(int(below), AT_SHARE_PER_ROUND)

    async def _claim(self, node_id: uuid.UUID) -> Lease | None:
        """The node's lease, if free, at the moment this replica's share says (the module's
        doc): at once below it; at its share, ``AT_SHARE_DELAY`` into a round, after the
        share is counted again, one node a round (unless this replica let the node go a
        moment ago)."""
        if not self._below_share():
            if time.monotonic() - self._let_go.get(node_id, -math.inf) < LET_GO_SECONDS:
                return None
            phase = time.time() % CLAIM_SECONDS
            wait = AT_SHARE_DELAY - phase
            await asyncio.sleep(wait if wait >= 0 else wait + CLAIM_SECONDS)
            await self._recount(round((time.time() - AT_SHARE_DELAY) / CLAIM_SECONDS))
        # The round's claims of this replica go in one statement, which grants the room.
        return await self._app[LEASES].try_acquire(f"{NODE_LEASE_PREFIX}{node_id}", room=self._room)

    async def _recount(self, this_round: int) -> None:
        """The share counted again, once a round, for the claimants at share: after a replica
        died or froze, the survivors are below their new share at the next round."""
        if self._recounting is None or self._recount_round != this_round:
            self._recount_round = this_round
            self._recounting = asyncio.ensure_future(self._count_share())
        await asyncio.shield(self._recounting)

    async def _count_share(self) -> None:
        replicas = None if self._aside else await self._app[LEASES].replicas()
        if self._aside:  # (also if it stepped aside while counting)
            self._share = 0
        elif replicas is not None:  # else the share counted last stands
            self._share = math.ceil(self._node_count / replicas)

    def _unreached_node(self, node_id: uuid.UUID) -> None:
        """The node could not be reached from here. A replica that reaches the database but
        not the nodes (its network, a firewall that lets only the other replicas in) would
        still be counted in every replica's share: the others would stop at theirs while
        its share went unfollowed. Once it follows none and has failed to reach
        ``UNREACHED_NODES`` since it last opened a stream, it asks nodes that other replicas
        hold now (not those it failed); if none answers, it steps aside
        (:meth:`_aside_while_cut_off`). Nodes that are down fail on every replica: a replica
        that reaches the others stays."""
        self._unreached.add(node_id)
        if not self._cut_off() or not self._app[LEASES].shared:
            return  # (the only control plane goes on trying)
        if self._probing is None or self._probing.done():
            self._probing = asyncio.create_task(self._aside_while_cut_off(), name="node-reach")

    def _cut_off(self) -> bool:
        """Whether this replica, counted, follows no node and failed enough of them."""
        enough = min(UNREACHED_NODES, max(1, self._node_count))
        return not self._aside and not self._open and len(self._unreached) >= enough

    def _reached(self) -> None:
        """A stream opened: counted again, at once if this replica stood aside."""
        self._back("a node's stream opened")

    def _back(self, why: str) -> None:
        self._unreached.clear()
        if not self._aside:
            return
        self._aside = False
        self._came_back.set()
        self._app[METRICS].node_events_aside.set(0)
        log.info("node events: counted in the shares again", why=why)

    async def _aside_while_cut_off(self) -> None:
        """Step aside if the nodes other replicas hold do not answer either: claim none, and
        ask not to be counted (the others' shares then cover every node); every
        ``PROBE_SECONDS`` ask again, and come back at the first answer, or when no other
        replica holds any node (each then goes on trying, as a replica alone does)."""
        leases = self._app[LEASES]
        try:
            answered = await self._answering_elsewhere()
            if answered is not False or not self._cut_off():
                # The nodes it failed are down (or none to ask); or a stream opened meanwhile.
                self._unreached.clear()
                return
            self._aside = True
            self._share = 0
            self._came_back.clear()
            self._app[METRICS].node_events_aside.set(1)
            log.warning(
                "node events: the nodes the other replicas hold cannot be reached from this"
                " replica; stepping aside (not counted in the shares) until they can",
                tried=len(self._unreached),
            )
            await leases.count_me(False)
            while self._aside:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(PROBE_SECONDS):
                        await self._came_back.wait()
                if not self._aside:
                    break
                answered = await self._answering_elsewhere()
                if answered is True:
                    self._back("a node the others hold answered")
                elif answered is None:
                    self._back("no other replica holds a node")
        finally:
            if self._aside and not _cancelling():
                self._back("the probe failed")  # back to trying the nodes
            if not leases.counted and not _cancelling():
                await leases.count_me(True)

    async def _answering_elsewhere(self) -> bool | None:
        """Whether any of up to ``PROBED_NODES`` nodes other replicas hold now (at random, not
        one this replica failed) answers this one (any answer: it is reached); None when no
        other replica holds a node, or the database cannot say."""
        try:
            async with transaction(self._app[SESSIONS]) as db:
                nodes = {f"{NODE_LEASE_PREFIX}{n.id}": n for n in await db.scalars(select(Node))}
            held = await self._app[LEASES].held_elsewhere(list(nodes))
        except Exception:
            log.warning("node events: cannot tell which nodes the others hold", exc_info=True)
            return None
        if not held:
            return None
        # A node held elsewhere may be one that is down, its holder still trying to connect.
        fresh = sorted(n for n in held if nodes[n].id not in self._unreached) or sorted(held)
        asked = random.sample(fresh, min(PROBED_NODES, len(fresh)))
        answers = await asyncio.gather(*(self._answers(nodes[name]) for name in asked))
        return any(answers)

    async def _answers(self, node: Node) -> bool:
        try:
            await self._app[NODES].system_info(node)
        except (NodeUnreachable, UpstreamNoAnswer):
            return False
        except ApiError:
            return True  # an answer (an error, a refusal, TLS): the node is reached
        except Exception:
            log.warning("node events: probing a node failed", node=node.name, exc_info=True)
            return False
        return True

    def _let_extra_go(self) -> None:
        """The nodes followed beyond this replica's share (and the slack), chosen at random,
        are let go for the other replicas to take up."""
        extra = len(self._following) - self._share
        if extra <= SHARE_SLACK:
            return
        now = time.monotonic()
        self._let_go = {n: at for n, at in self._let_go.items() if now - at < LET_GO_SECONDS}
        for node_id in random.sample(sorted(self._following), int(extra)):
            self._let_go[node_id] = now
            self._stop_following(node_id)  # the next scan starts a claimant
        log.info("node events: letting nodes go to other replicas", count=extra, share=self._share)

    async def close(self) -> None:
        tasks = [*self._tasks.values(), *filter(None, [self._probing])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _follow(self, node_id: uuid.UUID) -> None:
        backoff = 1.0
        while True:
            lease = await self._claim(node_id)
            if lease is None:
                # Another replica follows it, or none can: asked again at the next round.
                await asyncio.sleep(CLAIM_SECONDS - time.time() % CLAIM_SECONDS)
                continue
            self._following.add(node_id)
            try:
                await self._follow_under(node_id, lease)
                backoff = 1.0
            except (ApiError, aiohttp.ClientError, TimeoutError) as err:
                log.info("node events unavailable", node=str(node_id), error=str(err))
            except StreamGap:
                # Opened again from the last event applied, after the backoff (a node that
                # says so in a loop waits longer each time).
                log.info("node events: reopening after a gap", node=str(node_id))
            except LeaseLost:
                self._app[METRICS].event_stream_leases_lost.inc()
                log.warning(
                    "node events: lease lost; another replica may follow", node=str(node_id)
                )
                backoff = 1.0
            finally:
                self._following.discard(node_id)
                await lease.release()
            if _cancelling():
                raise asyncio.CancelledError  # asked to stop while a failure was handled
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)

    async def _follow_under(self, node_id: uuid.UUID, lease: Lease) -> None:
        """Listen until the stream ends or the lease is lost, whichever comes first."""
        listening = asyncio.create_task(self._listen(node_id, lease))
        lost = asyncio.create_task(lease.lost.wait())
        try:
            await asyncio.wait([listening, lost], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (listening, lost):
                task.cancel()
            # Both awaited without raising here: this follower being cancelled (the app
            # stopping) must end it, even when the stream had just failed in the same turn
            # of the loop (its error, raised in this finally, would replace the cancellation
            # and the follower would go on for ever: a stop that never ends).
            await asyncio.gather(lost, listening, return_exceptions=True)
        if lost.done() and not lost.cancelled():
            raise LeaseLost
        if not listening.cancelled():
            listening.result()

    async def _listen(self, node_id: uuid.UUID, lease: Lease) -> None:
        async with transaction(self._app[SESSIONS]) as db:
            node = await db.get(Node, node_id)
        if node is None:
            return
        # The address this follower uses: a scan restarts it only if the node's changes. (A
        # scan that compared with the address seen at its own last look restarted a follower
        # already on the new one, and the events sent while it reconnected were lost.)
        self._urls[node_id] = node.url
        client = self._app[NODES]
        # Resumed after the last audit-worthy event applied (the agent replays what it kept).
        position = StreamPosition.resuming(node.events_cursor)
        after = position.cursor
        try:
            socket = await client.open_events(node, after=after)
        except NodeUnreachable:
            self._unreached_node(node_id)
            raise
        self._reached()
        log.info("following node events", node=node.name)
        metrics = self._app[METRICS]
        metrics.event_stream_connected.labels(node.name).set(1)
        metrics.event_stream_follows.labels(node.name).inc()
        recorder = HistoryRecorder()
        self._open.add(node_id)
        try:
            # Events sent while we were away are lost: read every server's state once now.
            await self._resync(node)
            async for message in socket:
                if message.type != aiohttp.WSMsgType.TEXT:
                    continue
                if not lease.valid():
                    raise LeaseLost  # frozen past the lease's expiry: another may follow now
                with contextlib.suppress(ValueError):
                    event = json.loads(message.data)
                    if not isinstance(event, dict):
                        continue
                    if event.get("type") == "token_expiring":
                        token = client.events_token(node, after=after)
                        await socket.send_json({"event": "auth", "args": [token]})
                    elif event.get("type") == "stream":
                        if position.started(event) and position.stored is None:
                            await self._record(node, position)
                    elif event.get("type") == "stats":
                        await self._sample(node, recorder, event)
                    elif event.get("type") == "dropped":
                        # What the lost events said: replayed (the audit-worthy ones) and
                        # read again (the states) on a new stream from the last one applied.
                        self._dropped(node, event)
                        raise StreamGap
                    else:
                        log.debug("node event", node=node.name, data=event)
                        before = dataclasses.replace(position)
                        try:
                            await self._apply(node, event, position=position)
                        except BaseException:
                            position.__dict__.update(before.__dict__)  # not applied
                            raise
        finally:
            self._open.discard(node_id)
            metrics.event_stream_connected.labels(node.name).set(0)
            await socket.close()
            # What this stream had folded so far: a later follower's rows merge with it.
            with contextlib.suppress(Exception):
                await asyncio.shield(self.store(node, recorder.take_all()))

    def _dropped(self, node: Node, event: dict[str, Any]) -> None:
        try:
            lost = EventsDropped.model_validate(event).count
        except ValidationError:
            return
        log.warning(
            "node events dropped: reopening after the last applied", node=node.name, lost=lost
        )
        self._app[METRICS].node_events_dropped.labels(node.name).inc(max(0, lost))

    async def _sample(self, node: Node, recorder: HistoryRecorder, event: dict[str, Any]) -> None:
        """Fold one resource sample in; write the buckets it completes."""
        try:
            sample = StatsEvent.model_validate(event)
        except ValidationError:
            return
        now = self._app[WALL_CLOCK]()
        self._app[METRICS].event_stream_lag.labels(node.name).set(max(0.0, now - sample.sampled_at))
        recorder.add(sample, now)
        await self.store(node, recorder.take_complete(now))
        await self._watch_disk(node, sample)

    async def _watch_disk(self, node: Node, sample: StatsEvent) -> None:
        """``server.disk.nearly_full`` (audited; alerts and webhooks act on it) when a
        server's disk crosses :data:`NEARLY_FULL` of its limit."""
        used, limit = sample.disk_used_bytes, sample.disk_limit_bytes
        if used is None or not limit:
            return
        share = used / limit
        if share < NO_LONGER_NEARLY_FULL:
            self._nearly_full.discard(sample.server)
            return
        if share < NEARLY_FULL or sample.server in self._nearly_full:
            return
        async with transaction(self._app[SESSIONS]) as db:
            server = await db.get(Server, sample.server)
            if server is None or server.node_id != node.id:
                return
            self._nearly_full.add(sample.server)
            details = {"used_bytes": used, "limit_bytes": limit, "percent": round(share * 100)}
            await self._audit_server(db, node, "server.disk.nearly_full", server, details)

    async def store(self, node: Node, buckets: list[Bucket]) -> None:
        """Write buckets of this node's own servers (a node speaks for its servers only)."""
        if not buckets:
            return
        async with transaction(self._app[SESSIONS]) as db:
            ids = {bucket.server_id for bucket in buckets}
            mine = set(
                await db.scalars(
                    select(Server.id).where(Server.node_id == node.id, Server.id.in_(ids))
                )
            )
            await resource_history.write(db, [b for b in buckets if b.server_id in mine])

    async def _resync(self, node: Node) -> None:
        async with transaction(self._app[SESSIONS]) as db:
            server_ids = list(await db.scalars(select(Server.id).where(Server.node_id == node.id)))
        for server_id in server_ids:
            try:
                status = await self._app[NODES].read_server(node, server_id, user="system")
            except ApiError as err:
                log.info("resync: server not readable", server=str(server_id), error=err.message)
                continue
            outcome = status.last_install
            if outcome is not None and status.install in ("installed", "failed"):
                # An install that ended while no one was following the node.
                missed = {"type": "install", "server": str(server_id), **outcome.model_dump()}
                await self._apply(node, missed, resync=True)
            state: str = status.state
            if status.install == "failed" and state == "offline":
                state = "install_failed"
            event = {"type": "state", "server": str(server_id), "state": state}
            await self._apply(node, event, resync=True)

    async def _apply(
        self,
        node: Node,
        event: dict[str, Any],
        *,
        resync: bool = False,
        position: StreamPosition | None = None,
    ) -> None:
        """Apply one event; ``resync``: what the node reported when asked (a state stands).
        An install outcome already recorded is not recorded again, nor a numbered event
        applied before (``position``: where the stream is)."""
        kind = event.get("type")
        start_now = False
        seq = position.number(event) if position is not None else None
        if position is not None and seq is not None and seq <= position.applied:
            return  # applied before this follower came, or replayed twice
        replayed = position is not None and seq is not None and seq <= position.start
        if kind == "sftp_failures":
            await self._sftp_failures(node, event, position, seq)
            return
        if not isinstance(kind, str):
            return
        try:
            server_id = uuid.UUID(str(event.get("server")))
            told = AUDITED[kind].model_validate(event) if kind in AUDITED else None
        except (ValueError, ValidationError):  # not a server's event, or not one at all
            return
        async with transaction(self._app[SESSIONS]) as db:
            server = await db.get(Server, server_id)
            if server is None or server.node_id != node.id:
                return
            if position is not None and seq is not None:
                await self._advance(db, node, position, seq)
            if kind == "state" and str(event.get("state")) in STATES:
                state = str(event["state"])
                # A failed install's server is offline on the node; here it stays failed.
                if resync or not (state == "offline" and server.state == "install_failed"):
                    await change_state(db, server, state)
                if state == "installing":
                    forget_install(server)
            elif isinstance(told, CrashEvent):
                state = "starting" if told.restarting else "crashed"
                # Published even when the node's own ``crashed`` state event was lost; not
                # when replayed (the read on connecting has the state of now).
                if not replayed:
                    await change_state(db, server, state)
                await self._audit_server(db, node, "server.crashed", server, audited(told))
            elif kind == "install":
                # Once, whichever comes first: the event, or the read after (re)connecting
                # (an event sent while that read ran arrives after it).
                if install_recorded(server, event):
                    return
                install = record_install(server, event)
                await change_state(db, server, state_after(install))
                start_now = install.success and _starts_on_completion(server)
                # The last lines stay out of the audit trail: scripts may print secrets.
                await self._audit_server(
                    db, node, "server.install.finished", server, audited(install)
                )
            elif isinstance(told, BackupEvent) and told.operation == "create":
                # A backup made in the background finished (webhooks and alerts act on it).
                if told.status in ("completed", "failed"):
                    action = f"server.backup.{told.status}"
                    await self._audit_server(db, node, action, server, audited(told))
            elif isinstance(told, DiskFullEvent):
                await self._audit_server(db, node, "server.disk.full", server, audited(told))
            elif isinstance(told, SftpLoginEvent):
                action = "server.sftp.login" if told.success else "server.sftp.login_failed"
                await self._audit_server(db, node, action, server, audited(told))
        if start_now:
            await self._start_on_completion(node, server_id)

    async def _start_on_completion(self, node: Node, server_id: uuid.UUID) -> None:
        """Pterodactyl's ``start_on_completion``: the first install has succeeded, the game
        starts (as the control plane's own action, audited ``server.power.start`` by it). A
        start the node refuses leaves the server installed and offline, and says why."""
        async with transaction(self._app[SESSIONS]) as db:
            server = await db.get(Server, server_id)
            if server is None or server.suspended or server.node_id != node.id:
                return
        try:
            await server_actions.power_for_system(
                self._app, server, node, PowerIn(action="start"), why="start_on_completion"
            )
        except ApiError as err:
            log.warning(
                "installed; its start on completion failed",
                server=str(server_id),
                error=err.message,
            )
            async with transaction(self._app[SESSIONS]) as db:
                await self._audit_server(
                    db,
                    node,
                    "server.power.start_failed",
                    server,
                    {"by": "start_on_completion", "reason": err.message[:MAX_AUDITED_TEXT]},
                )

    async def _advance(self, db: Any, node: Node, position: StreamPosition, seq: int) -> None:
        """Record numbered event ``seq`` as applied, in the transaction that applies it, if the
        node's cursor is still the one this follower knows: else another follower has moved
        it (this one was frozen past its lease), and this one stops before applying it."""
        position.applied = max(position.applied, seq)
        await self._store_cursor(db, node, position)

    async def _store_cursor(self, db: Any, node: Node, position: StreamPosition) -> None:
        cursor = position.cursor
        moved = await db.execute(
            update(Node)
            .where(Node.id == node.id, Node.events_cursor.is_not_distinct_from(position.stored))
            .values(events_cursor=cursor)
        )
        if moved.rowcount != 1:
            raise LeaseLost
        position.stored = cursor

    async def _record(self, node: Node, position: StreamPosition) -> None:
        """Where a node no follower recorded yet starts being followed."""
        async with transaction(self._app[SESSIONS]) as db:
            await self._store_cursor(db, node, position)

    async def _sftp_failures(
        self,
        node: Node,
        event: dict[str, Any],
        position: StreamPosition | None = None,
        seq: int | None = None,
    ) -> None:
        """One window's failed SFTP logins from one source: one audit row on the node."""
        try:
            summary = SftpFailuresEvent.model_validate(event)
        except ValidationError:
            log.warning("node sent an unreadable sftp_failures event", node=node.name)
            return
        # Reasons as values, not keys: the trail blanks a key that names a password, and
        # the count of wrong passwords is the one an operator looks for.
        details = audited(summary) | {
            "reasons": [
                {"reason": reason, "count": count}
                for reason, count in sorted(summary.reasons.items())
            ]
        }
        row = audit.AuditEvent(
            "node.sftp.login_failures", target_type="node", target_id=str(node.id), details=details
        )
        async with transaction(self._app[SESSIONS]) as db:
            if position is not None and seq is not None:
                await self._advance(db, node, position, seq)
            await self._audit(db, node, row)

    async def _audit_server(
        self, db: Any, node: Node, action: str, server: Server, details: dict[str, Any]
    ) -> None:
        event = audit.AuditEvent(
            action, target_type="server", target_id=str(server.id), details=details
        )
        await self._audit(db, node, event)

    async def _audit(self, db: Any, node: Node, event: audit.AuditEvent) -> None:
        """Audit one of the node's events if its budget allows; else count it."""
        now = self._clock()
        allowance = self._allowances.get(node.id)
        if allowance is None:
            allowance = self._allowances[node.id] = _Allowance(self._audit_budget, now)
        if allowance.take(self._audit_budget, now):
            if allowance.skipped:
                await self._report_not_audited(db, node, allowance, now)
            await audit.append(db, None, event)
            return
        allowance.skipped += 1
        self._app[METRICS].node_events_not_audited.labels(node.name).inc()
        due = allowance.reported_at is None or (
            now - allowance.reported_at >= NOT_AUDITED_REPORT_SECONDS
        )
        if due:
            log.warning(
                "node sends more audited events than its budget: applied, not audited",
                node=node.name,
                burst=self._audit_budget.burst,
                per_second=self._audit_budget.per_second,
            )
            await self._report_not_audited(db, node, allowance, now)

    async def _report_not_audited(
        self, db: Any, node: Node, allowance: _Allowance, now: float
    ) -> None:
        details = {
            "events": allowance.skipped,
            "burst": self._audit_budget.burst,
            "per_second": self._audit_budget.per_second,
        }
        allowance.skipped, allowance.reported_at = 0, now
        await audit.append(
            db,
            None,
            audit.AuditEvent(
                "node.events.not_audited",
                target_type="node",
                target_id=str(node.id),
                details=details,
            ),
        )


async def node_event_listener(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: follow the nodes' event streams while the app runs."""
    listener = app[NODE_EVENTS] = NodeEventListener(app)
    task = asyncio.create_task(listener.run(), name="node-events")
    yield
    await background.stop(task)
    await listener.close()
