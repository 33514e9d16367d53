"""A server's resource history, for graphs."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from control_plane.schemas.common import Input, Output

HistoryRange = Literal["15m", "1h", "6h", "24h", "7d", "30d"]


class StatsHistoryQuery(Input):
    range: HistoryRange = Field(
        "1h",
        description="How far back: up to 6h in 10-second points, longer in 5-minute points.",
    )


class StatsPoint(Output):
    at: int = Field(description="The point's bucket start, in seconds since the epoch.")
    cpu_percent: float = Field(description="Average over the bucket (100 = one core).")
    cpu_max_percent: float
    memory_bytes: int = Field(description="Average over the bucket.")
    memory_max_bytes: int
    network_rx_bytes_per_second: float | None
    network_tx_bytes_per_second: float | None
    disk_used_bytes: int | None
    disk_limit_bytes: int | None
    samples: int = Field(description="How many samples the bucket holds.")


class StatsHistoryOut(Output):
    range: HistoryRange
    resolution_seconds: int
    points: list[StatsPoint]
