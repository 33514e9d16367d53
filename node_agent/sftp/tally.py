"""Every failed SFTP login attempt counted, reported as one audit row per source and window.

A flood of random user names must reach the audit trail without flooding it. Each failure is
counted against its source (an IPv4 address, or an IPv6 /64: ``limiter.source_of``) and its
reason; every ``window`` seconds the counts go to the control plane as one
:class:`~shared.node_api.SftpFailuresEvent` per source, and start again. The table holds at
most ``capacity`` sources; once full, further sources are counted together under ``*``, so
memory and audit rows per window stay bounded while no attempt goes uncounted.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from typing import Final, Literal

from shared.node_api import SftpFailuresEvent

DEFAULT_CAPACITY: Final = 512
# Sources past the capacity, counted together.
OVERFLOW_SOURCE: Final = "*"
Reason = Literal[
    "unknown_account",
    "wrong_key",
    "wrong_password",
    "rate_limited",
    "too_many_connections",
    "too_many_sessions",
]


class FailureTally:
    """Counts of failures per source and reason since the last :meth:`drain`."""

    def __init__(
        self, capacity: int = DEFAULT_CAPACITY, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._capacity = capacity
        self._clock = clock
        self._since = clock()
        self._counts: dict[str, collections.Counter[str]] = {}
        self.total = 0  # every failure counted since the agent started

    def __len__(self) -> int:
        return len(self._counts)

    def count(self, source: str, reason: Reason) -> None:
        """One more failure from ``source``."""
        self.total += 1
        counts = self._counts.get(source)
        if counts is None:
            if len(self._counts) >= self._capacity:
                source = OVERFLOW_SOURCE
            counts = self._counts.setdefault(source, collections.Counter())
        counts[reason] += 1

    def drain(self) -> list[SftpFailuresEvent]:
        """The window's events (one per source, most failures first), and a new window."""
        now = self._clock()
        seconds = round(now - self._since, 3)
        events = [
            SftpFailuresEvent(
                source=source, count=sum(reasons.values()), reasons=dict(reasons), seconds=seconds
            )
            for source, reasons in sorted(
                self._counts.items(), key=lambda item: -sum(item[1].values())
            )
        ]
        self._counts = {}
        self._since = now
        return events
