"""The ``[sftp]`` settings table: failure limits and connection caps; fixed per-connection caps."""

from __future__ import annotations

from typing import Final

import asyncssh
from pydantic import BaseModel, ConfigDict, Field

# An SFTP packet announced longer than the largest a client may send (a 4 MiB write and its
# header) ends the channel: asyncssh would otherwise buffer all of it, up to 4 GiB.
MAX_PACKET_BYTES: Final = asyncssh.sftp.MAX_SFTP_WRITE_LEN + 1024
# Answers queued for a client that does not take them: past this, its next read waits.
MAX_UNSENT_BYTES: Final = 8 * 1024 * 1024
# SFTP channels and open files per connection (each open file is an fd of the agent's).
MAX_SFTP_CHANNELS_PER_CONNECTION: Final = 4
# Channels of any kind open at once on a connection: asyncssh accepts a session channel and
# keeps it whether or not it ever asks for SFTP (only those that do are counted above).
MAX_CHANNELS_PER_CONNECTION: Final = 8
MAX_HANDLES_PER_CONNECTION: Final = 256
# Directory handles: one not read yet costs ~0.5 KiB (a channel may hold this many); one
# being read holds its whole listing (up to [files] max_list_entries entries, megabytes)
# until it is read to the end or closed, so a connection reads this many at once.
MAX_DIRECTORY_HANDLES_PER_CHANNEL: Final = 64
MAX_LISTINGS_PER_CONNECTION: Final = 4


class SftpLimits(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Failed logins per source address and per known account: a burst, then one per period.
    failures_burst: int = Field(default=10, ge=1, le=1000)
    failure_refill_seconds: float = Field(default=6.0, gt=0, le=3600)
    # Buckets kept at most (per store); full of unrefilled ones, new addresses are refused.
    failure_buckets: int = Field(default=16_384, ge=16, le=1_000_000)
    # Seconds a connection has for banner, key exchange and login.
    login_timeout_seconds: float = Field(default=10.0, gt=0, le=600)
    # Connections open at once, logged in or not (each holds an fd and ~100 KiB; well below
    # the unit's LimitNOFILE=65536, which also covers open files and volumes).
    max_connections: int = Field(default=1024, ge=1, le=100_000)
    # From one source address at once (so one address cannot take every connection).
    max_connections_per_address: int = Field(default=16, ge=1, le=10_000)
    # Of those, not yet logged in: idle sockets from a few addresses cannot fill the listener.
    # (An "address" here and for the failure limits: an IPv4 address or an IPv6 /64.)
    max_unauthenticated_per_address: int = Field(default=4, ge=1, le=10_000)
    # Sessions one account has open at once on this node, across its servers (each may hold
    # 256 open files: 8 keep one account far below the unit's LimitNOFILE).
    max_sessions_per_user: int = Field(default=8, ge=1, le=1000)
    # Failed logins are counted per source and reported once per this many seconds (one audit
    # row per source and window); at most failure_report_sources sources apart per window.
    failure_report_seconds: float = Field(default=60.0, gt=0, le=86_400)
    failure_report_sources: int = Field(default=512, ge=1, le=900)
