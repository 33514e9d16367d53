"""What a server list shows of each server's resource use: its latest 10-second average.

The samples of every running server reach the database as 10-second buckets
(control_plane/services/resource_history.py), one row each, written once the bucket is over:
the latest is at most ~20 s old. A list of 50 servers reads them in one statement, whatever
node each server is on, without asking a node anything.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Final

from sqlalchemy import bindparam, select

from control_plane.db.models import ServerStatsBucket
from control_plane.db.reader import StatementReader
from control_plane.schemas.resource_use import ResourceUse
from control_plane.services.resource_history import TIERS

_RESOLUTION: Final = TIERS[0].resolution
# Older than this, the server is not running (or its node is away): no figure is shown.
FRESH_SECONDS: Final = 60

_LATEST: Final = (
    select(
        ServerStatsBucket.server_id,
        ServerStatsBucket.bucket,
        ServerStatsBucket.samples,
        ServerStatsBucket.cpu_sum,
        ServerStatsBucket.memory_sum,
    )
    .where(
        ServerStatsBucket.resolution == _RESOLUTION,
        ServerStatsBucket.server_id.in_(bindparam("server_ids", expanding=True)),
        ServerStatsBucket.bucket >= bindparam("since"),
    )
    .order_by(ServerStatsBucket.bucket)
)


async def latest(
    reader: StatementReader, server_ids: Iterable[str], now: float
) -> dict[str, ResourceUse]:
    """The latest use of each of ``server_ids`` sampled in the last minute, by server id
    (a server without one — stopped, or its node away — is left out)."""
    ids = [uuid.UUID(str(server_id)) for server_id in server_ids]
    if not ids:
        return {}
    rows = await reader.rows(_LATEST, {"server_ids": ids, "since": int(now) - FRESH_SECONDS})
    found: dict[str, ResourceUse] = {}
    for server_id, bucket, samples, cpu_sum, memory_sum in rows:  # oldest first: last wins
        if samples:
            key = str(server_id)
            found[key] = ResourceUse(
                server_id=key,
                cpu_percent=round(cpu_sum / samples, 1),
                memory_bytes=int(memory_sum / samples),
                at=bucket + _RESOLUTION,
            )
    return found
