"""Failed SFTP logins limited per source address and per account, in bounded memory.

A token bucket per key: ``burst`` failures at once, then one more every ``refill_seconds``.
A bucket that has refilled is forgotten. The store holds at most ``capacity`` buckets; when it
is full of buckets that have not refilled, a new key is refused outright (fails closed), so a
flood from ever new addresses cannot grow it. Only accounts the access table knows get a
bucket of their own: random user names count against their source address alone.

A source is an IPv4 address or an IPv6 /64 (:func:`source_of`): one host, or one customer
of a provider, holds a whole /64, so counting its addresses apart would give it 2^64 buckets.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable
from typing import Final

DEFAULT_CAPACITY: Final = 16_384
# A full store is swept for refilled buckets at most this often (a sweep walks all of it).
SWEEP_SECONDS: Final = 1.0


def source_of(address: str) -> str:
    """The key limits count ``address`` under: itself (IPv4), its /64 (IPv6), the IPv4 address
    inside an IPv4-mapped IPv6 one; text that is no address stays as it is."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class FailureLimiter:
    """Token buckets of failed attempts, keyed by address or account."""

    def __init__(
        self,
        *,
        burst: int = 10,
        refill_seconds: float = 6.0,
        capacity: int = DEFAULT_CAPACITY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._burst = float(burst)
        self._refill = refill_seconds
        self._capacity = capacity
        self._clock = clock
        # key -> (tokens left, when they were counted)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._swept = float("-inf")

    def __len__(self) -> int:
        return len(self._buckets)

    def _tokens(self, key: str, now: float) -> float | None:
        bucket = self._buckets.get(key)
        if bucket is None:
            return None
        tokens, since = bucket
        return min(self._burst, tokens + (now - since) / self._refill)

    def allows(self, key: str) -> bool:
        """Whether an attempt for ``key`` may be checked at all."""
        now = self._clock()
        tokens = self._tokens(key, now)
        if tokens is None:
            return len(self._buckets) < self._capacity or self._sweep(now)
        return tokens >= 1.0

    def failed(self, key: str) -> None:
        """Count one failed attempt for ``key``."""
        now = self._clock()
        tokens = self._tokens(key, now)
        if tokens is None:
            if len(self._buckets) >= self._capacity and not self._sweep(now):
                return  # full: this key is refused by allows() anyway
            tokens = self._burst
        self._buckets[key] = (max(tokens - 1.0, 0.0), now)

    def _sweep(self, now: float) -> bool:
        """Forget refilled buckets (at most once a SWEEP_SECONDS); whether there is room now."""
        if now - self._swept < SWEEP_SECONDS:
            return False
        self._swept = now
        full = [key for key in self._buckets if (self._tokens(key, now) or 0.0) >= self._burst]
        for key in full:
            del self._buckets[key]
        return len(self._buckets) < self._capacity
