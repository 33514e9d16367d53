"""The ``[sftp]`` settings table: failure limits and connection caps."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class SftpLimits(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Failed logins per source address and per known account: a burst, then one per period.
    failures_burst: int = Field(default=10, ge=1, le=1000)
    failure_refill_seconds: float = Field(default=6.0, gt=0, le=3600)
    # Buckets kept at most (per store); full of unrefilled ones, new addresses are refused.
    failure_buckets: int = Field(default=16_384, ge=16, le=1_000_000)
    # Seconds a connection has to log in; connections open at once, logged in or not.
    login_timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    max_connections: int = Field(default=1024, ge=1, le=100_000)
    # From one source address at once (so one address cannot take every connection).
    max_connections_per_address: int = Field(default=16, ge=1, le=10_000)
