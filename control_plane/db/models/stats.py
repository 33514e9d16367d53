"""Resource history of servers, downsampled (control_plane/services/resource_history.py).

One row per server, resolution and time bucket: sums and a count (so partial buckets written
by two replicas in turn merge into the right averages), peaks, and the last disk reading.
"""

from __future__ import annotations

import uuid

from sqlalchemy import BigInteger, Float, ForeignKey, Index, Integer
from sqlalchemy.orm import Mapped, mapped_column

from control_plane.db.models.base import Base


class ServerStatsBucket(Base):
    __tablename__ = "server_stats"
    # The retention job deletes by resolution and age, across servers.
    __table_args__ = (Index("ix_server_stats_resolution", "resolution", "bucket"),)

    server_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("servers.id", ondelete="CASCADE"), primary_key=True
    )
    # Bucket width in seconds (10 or 300), and its start in seconds since the epoch.
    resolution: Mapped[int] = mapped_column(Integer, primary_key=True)
    bucket: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    samples: Mapped[int] = mapped_column(Integer)
    cpu_sum: Mapped[float] = mapped_column(Float)
    cpu_max: Mapped[float] = mapped_column(Float)
    memory_sum: Mapped[float] = mapped_column(Float)
    memory_max: Mapped[int] = mapped_column(BigInteger)
    # Network rates need two samples in a row of one container run: their own count.
    rate_samples: Mapped[int] = mapped_column(Integer)
    rx_rate_sum: Mapped[float] = mapped_column(Float)
    tx_rate_sum: Mapped[float] = mapped_column(Float)
    disk_used: Mapped[int | None] = mapped_column(BigInteger)
    disk_limit: Mapped[int | None] = mapped_column(BigInteger)
