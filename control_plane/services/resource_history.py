"""Servers' resource history, downsampled with bounded storage.

Samples arrive every few seconds per running server on the node event stream
(``StatsEvent``, sent by ``node_agent/sampler.py``); the replica following that node feeds
them to its :class:`HistoryRecorder`. The recorder folds them into buckets of each
:data:`TIERS` resolution in memory and writes a bucket once it is complete, so the database
sees one row per server per 10 s and per 5 min, not one per sample. A row holds sums and a
count: a bucket written in two parts (a replica took over the node mid-bucket) merges into
the same averages. :func:`trim` (a job run once across replicas) deletes what is older than
its tier keeps, so each server has at most ``keep / resolution`` rows per tier.

Buckets are placed by the control plane's clock when a sample arrives (one clock for every
node, whatever the agents' clocks say).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from sqlalchemy import and_, delete, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.models import ServerStatsBucket
from shared.node_api import StatsEvent


@dataclass(frozen=True)
class Tier:
    resolution: int  # seconds per bucket
    keep: int  # seconds of history kept


TIERS: Final = (Tier(10, 86_400), Tier(300, 30 * 86_400))
# Network rates only between samples this close (a longer gap: the agent or stream was away).
MAX_RATE_GAP_SECONDS: Final = 60.0
# The ranges the history endpoint serves, and the tier each reads.
RANGES: Final = {
    "15m": (900, TIERS[0]),
    "1h": (3_600, TIERS[0]),
    "6h": (21_600, TIERS[0]),
    "24h": (86_400, TIERS[1]),
    "7d": (7 * 86_400, TIERS[1]),
    "30d": (30 * 86_400, TIERS[1]),
}


@dataclass
class Bucket:
    """One bucket being filled (or complete and waiting to be written)."""

    server_id: uuid.UUID
    resolution: int
    start: int
    samples: int = 0
    cpu_sum: float = 0.0
    cpu_max: float = 0.0
    memory_sum: float = 0.0
    memory_max: int = 0
    rate_samples: int = 0
    rx_rate_sum: float = 0.0
    tx_rate_sum: float = 0.0
    disk_used: int | None = None
    disk_limit: int | None = None

    def add(self, sample: StatsEvent, rates: tuple[float, float] | None) -> None:
        self.samples += 1
        self.cpu_sum += sample.cpu_percent
        self.cpu_max = max(self.cpu_max, sample.cpu_percent)
        self.memory_sum += sample.memory_bytes
        self.memory_max = max(self.memory_max, sample.memory_bytes)
        if rates is not None:
            self.rate_samples += 1
            self.rx_rate_sum += rates[0]
            self.tx_rate_sum += rates[1]
        if sample.disk_used_bytes is not None:
            self.disk_used = sample.disk_used_bytes
            self.disk_limit = sample.disk_limit_bytes

    def row(self) -> dict[str, Any]:
        return {
            "server_id": self.server_id,
            "resolution": self.resolution,
            "bucket": self.start,
            "samples": self.samples,
            "cpu_sum": self.cpu_sum,
            "cpu_max": self.cpu_max,
            "memory_sum": self.memory_sum,
            "memory_max": self.memory_max,
            "rate_samples": self.rate_samples,
            "rx_rate_sum": self.rx_rate_sum,
            "tx_rate_sum": self.tx_rate_sum,
            "disk_used": self.disk_used,
            "disk_limit": self.disk_limit,
        }


@dataclass
class _Previous:
    at: float
    rx: int
    tx: int


@dataclass
class HistoryRecorder:
    """Folds samples into buckets; hands out the complete ones to write."""

    _open: dict[tuple[uuid.UUID, int], Bucket] = field(default_factory=dict)
    _done: list[Bucket] = field(default_factory=list)
    _previous: dict[uuid.UUID, _Previous] = field(default_factory=dict)

    def add(self, sample: StatsEvent, now: float) -> None:
        """Fold in one sample that arrived at ``now`` (seconds since the epoch)."""
        rates = self._rates(sample, now)
        for tier in TIERS:
            start = int(now // tier.resolution) * tier.resolution
            key = (sample.server, tier.resolution)
            bucket = self._open.get(key)
            if bucket is not None and bucket.start != start:
                self._done.append(self._open.pop(key))
                bucket = None
            if bucket is None:
                bucket = self._open[key] = Bucket(sample.server, tier.resolution, start)
            bucket.add(sample, rates)

    def _rates(self, sample: StatsEvent, now: float) -> tuple[float, float] | None:
        before = self._previous.get(sample.server)
        self._previous[sample.server] = _Previous(
            now, sample.network_rx_bytes, sample.network_tx_bytes
        )
        if before is None:
            return None
        gap = now - before.at
        rx, tx = sample.network_rx_bytes - before.rx, sample.network_tx_bytes - before.tx
        # A restarted container counts from zero again; a long gap says nothing of the rate.
        if gap <= 0 or gap > MAX_RATE_GAP_SECONDS or rx < 0 or tx < 0:
            return None
        return rx / gap, tx / gap

    def take_complete(self, now: float) -> list[Bucket]:
        """Buckets that are complete: closed by a later sample, or whose time is over."""
        for key, bucket in list(self._open.items()):
            if bucket.start + bucket.resolution <= now:
                self._done.append(self._open.pop(key))
        done, self._done = self._done, []
        return done

    def take_all(self) -> list[Bucket]:
        """Every bucket, complete or not (the node's stream is going away)."""
        done = self._done + list(self._open.values())
        self._done, self._open = [], {}
        return done

    def forget(self, server_ids: Sequence[uuid.UUID]) -> None:
        for server_id in server_ids:
            self._previous.pop(server_id, None)


async def write(db: AsyncSession, buckets: Sequence[Bucket]) -> None:
    """Store buckets, merged into rows already there for the same bucket."""
    if not buckets:
        return
    table = ServerStatsBucket
    postgres = db.get_bind().dialect.name == "postgresql"
    insert = postgresql.insert(table) if postgres else sqlite.insert(table)
    excluded = insert.excluded
    greatest = func.greatest if postgres else func.max
    statement = insert.on_conflict_do_update(
        index_elements=["server_id", "resolution", "bucket"],
        set_={
            "samples": table.samples + excluded.samples,
            "cpu_sum": table.cpu_sum + excluded.cpu_sum,
            "cpu_max": greatest(table.cpu_max, excluded.cpu_max),
            "memory_sum": table.memory_sum + excluded.memory_sum,
            "memory_max": greatest(table.memory_max, excluded.memory_max),
            "rate_samples": table.rate_samples + excluded.rate_samples,
            "rx_rate_sum": table.rx_rate_sum + excluded.rx_rate_sum,
            "tx_rate_sum": table.tx_rate_sum + excluded.tx_rate_sum,
            "disk_used": func.coalesce(excluded.disk_used, table.disk_used),
            "disk_limit": func.coalesce(excluded.disk_limit, table.disk_limit),
        },
    )
    await db.execute(statement, [bucket.row() for bucket in buckets])


async def trim(db: AsyncSession, now: float) -> int:
    """Delete buckets older than their tier keeps; how many rows went."""
    result = await db.execute(
        delete(ServerStatsBucket).where(
            or_(
                *(
                    and_(
                        ServerStatsBucket.resolution == tier.resolution,
                        ServerStatsBucket.bucket < int(now) - tier.keep,
                    )
                    for tier in TIERS
                )
            )
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def history(
    db: AsyncSession, server_id: uuid.UUID, range_name: str, now: float
) -> tuple[int, list[dict[str, Any]]]:
    """The resolution and the points of one server's history over ``range_name``."""
    seconds, tier = RANGES[range_name]
    rows = await db.execute(
        select(ServerStatsBucket)
        .where(
            ServerStatsBucket.server_id == server_id,
            ServerStatsBucket.resolution == tier.resolution,
            ServerStatsBucket.bucket >= int(now) - seconds,
        )
        .order_by(ServerStatsBucket.bucket)
    )
    points = []
    for (row,) in rows:
        rates = row.rate_samples or None
        points.append(
            {
                "at": row.bucket,
                "cpu_percent": round(row.cpu_sum / row.samples, 3),
                "cpu_max_percent": round(row.cpu_max, 3),
                "memory_bytes": int(row.memory_sum / row.samples),
                "memory_max_bytes": row.memory_max,
                "network_rx_bytes_per_second": (
                    round(row.rx_rate_sum / rates, 3) if rates else None
                ),
                "network_tx_bytes_per_second": (
                    round(row.tx_rate_sum / rates, 3) if rates else None
                ),
                "disk_used_bytes": row.disk_used,
                "disk_limit_bytes": row.disk_limit,
                "samples": row.samples,
            }
        )
    return tier.resolution, points
