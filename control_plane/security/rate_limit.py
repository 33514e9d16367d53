"""Token-bucket rate limits: presets, an in-memory backend and a Redis backend.

Each preset has its own buckets (the key starts with the preset's name, so presets never
share one). A bucket holds ``capacity`` tokens and refills continuously at ``capacity`` per
``window``. Most presets are keyed by the client's address; those in :data:`SERVER_KEYED`
by address and server, and are only taken once the caller is known to see that server.

The memory backend is bounded and fails closed: it forgets only buckets that have refilled
(they hold no state), never one that still remembers spent tokens; when the store is full
of those, a new key is refused (429) until the soonest one refills. The Redis backend runs
one Lua script per check, on Redis' own clock, so any number of control-plane replicas share
the same buckets (Redis drops a key only once its bucket has refilled).
"""

from __future__ import annotations

import functools
import heapq
import ipaddress
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, NamedTuple, Protocol

import structlog
from redis.exceptions import RedisError

REDIS_TIMEOUT_SECONDS: Final = 0.5
REDIS_RETRY_SECONDS: Final = 5.0
DEFAULT_PRESETS: Final = {
    "authentication": (5, 60.0),
    "sensitive": (3, 900.0),
    "api": (100, 60.0),
    "power": (10, 60.0),
    "files": (30, 60.0),
    # Mails to an address the caller chooses (invitations): not a way to flood a mailbox.
    "invitations": (10, 3600.0),
    # Prometheus scrapes every replica and, through it, every node from one address.
    "metrics": (600, 60.0),
    # Password sign-ins per account from browsers it has not signed in with, whatever their
    # addresses (and per recognised browser): control_plane/security/devices.py.
    "sign_in_account": (10, 900.0),
}
# Presets keyed by client and server: taken after authentication, for a server the caller
# sees (so nobody can make buckets by inventing server ids).
SERVER_KEYED: Final = frozenset({"power"})
log = structlog.get_logger("rate_limit")


@dataclass(frozen=True)
class RateLimitPolicy:
    name: str
    capacity: int
    window_seconds: float

    @property
    def per_second(self) -> float:
        return self.capacity / self.window_seconds

    @functools.cached_property
    def limit_headers(self) -> tuple[str, str]:
        """``X-RateLimit-Limit`` and ``RateLimit-Policy``: the same for every answer."""
        return (
            str(self.capacity),
            f'"{self.name}";q={self.capacity};w={round(self.window_seconds)}',
        )


class Decision(NamedTuple):
    """One check's outcome, with what the rate-limit headers report (a named tuple: one is
    made for every request, and a frozen dataclass takes twice as long to make)."""

    policy: RateLimitPolicy
    allowed: bool
    remaining: int
    # Seconds until the bucket is full again, and until the next token (when refused).
    reset_after: float
    retry_after: float

    def headers(self, now_epoch: float) -> dict[str, str]:
        limit, policy = self.policy.limit_headers
        reset = max(1, math.ceil(self.reset_after))
        headers = {
            "X-RateLimit-Limit": limit,
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(math.ceil(now_epoch + self.reset_after)),
            "RateLimit-Policy": policy,
            "RateLimit": f'"{self.policy.name}";r={self.remaining};t={reset}',
        }
        if not self.allowed:
            headers["Retry-After"] = str(max(1, math.ceil(self.retry_after)))
        return headers


def parse_presets(text: str) -> dict[str, RateLimitPolicy]:
    """``"authentication=5/60,api=100/60"`` over the defaults; unknown names are refused."""
    presets = dict(DEFAULT_PRESETS)
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, spec = item.partition("=")
        count, _, window = spec.partition("/")
        if name not in DEFAULT_PRESETS:
            raise ValueError(
                f"unknown rate-limit preset {name!r} (one of {', '.join(DEFAULT_PRESETS)})"
            )
        try:
            capacity, seconds = int(count), float(window)
        except ValueError as err:
            raise ValueError(f"{item!r} must be NAME=COUNT/SECONDS, e.g. api=100/60") from err
        if capacity < 1 or seconds <= 0:
            raise ValueError(f"{item!r}: COUNT and SECONDS must be positive")
        presets[name] = (capacity, seconds)
    return {name: RateLimitPolicy(name, c, w) for name, (c, w) in presets.items()}


# Its argument is client_ip()'s answer (an address's text, or one word): short, and a few per
# client.
@functools.lru_cache(maxsize=4096)
def client_key(ip: str) -> str:
    """IPv6 clients are limited per /64 (one customer's network), IPv4 per address."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


class RateLimitBackend(Protocol):
    async def take(self, key: str, policy: RateLimitPolicy) -> Decision: ...

    async def close(self) -> None: ...


@dataclass(slots=True)
class _Bucket:
    policy: RateLimitPolicy
    tokens: float
    updated: float
    # When the bucket is full again (its entry in the refill heap is never later).
    full_at: float


class MemoryBackend:
    """Buckets in this process, at most ``max_keys`` of them; see the module for eviction.

    A heap orders buckets by the time they are full again, so making room costs O(log n)
    however many keys an attacker invents. It holds one entry per bucket, pushed when the
    bucket is made: a bucket's time to be full only moves later (a token taken), so an
    entry is never later than its bucket's time and a taken token needs no heap work. When
    an entry comes up whose bucket has moved on, it goes back in at the bucket's time.
    """

    def __init__(
        self, *, max_keys: int = 100_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._buckets: dict[str, _Bucket] = {}
        self._refills: list[tuple[float, str]] = []
        self._max_keys = max_keys
        self._clock = clock
        self._warned_full_at: float | None = None

    def __len__(self) -> int:
        return len(self._buckets)

    async def take(self, key: str, policy: RateLimitPolicy) -> Decision:
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            wait = self._make_room(now)
            if wait is not None:
                return Decision(policy, False, 0, wait, wait)
            bucket = self._buckets[key] = _Bucket(policy, float(policy.capacity), now, now)
            heapq.heappush(self._refills, (now, key))
        else:
            bucket.tokens = min(
                policy.capacity, bucket.tokens + (now - bucket.updated) * policy.per_second
            )
            bucket.updated = now
        allowed = bucket.tokens >= 1
        if allowed:
            bucket.tokens -= 1
            bucket.full_at = now + (policy.capacity - bucket.tokens) / policy.per_second
        return Decision(
            policy,
            allowed,
            int(bucket.tokens),
            (policy.capacity - bucket.tokens) / policy.per_second,
            0.0 if allowed else (1 - bucket.tokens) / policy.per_second,
        )

    def _make_room(self, now: float) -> float | None:
        """Room for one more bucket: None, or the seconds until there will be some."""
        while len(self._buckets) >= self._max_keys:
            if not self._refills:  # unreachable: every bucket has an entry
                return 1.0
            full_at, key = self._refills[0]
            bucket = self._buckets[key]
            if bucket.full_at > full_at:
                heapq.heapreplace(self._refills, (bucket.full_at, key))  # it moved on
                continue
            if full_at > now:
                # Every other entry is at or before its bucket's time and after this one.
                self._warn_full(now)
                return full_at - now
            heapq.heappop(self._refills)
            del self._buckets[key]
        return None

    def _warn_full(self, now: float) -> None:
        if self._warned_full_at is None or now - self._warned_full_at >= 60:
            self._warned_full_at = now
            log.warning(
                "rate-limit store full: new clients are refused until buckets refill; "
                "raise STELLAR_RATE_LIMIT_MAX_KEYS or set REDIS_URL",
                max_keys=self._max_keys,
            )

    async def close(self) -> None:
        self._buckets.clear()
        self._refills.clear()


# KEYS[1] bucket; ARGV capacity, window in ms. Returns allowed, tokens*1000, ms until full,
# ms until the next token. Time comes from Redis, so replicas' clocks do not matter.
_TAKE_SCRIPT: Final = """
local capacity = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = capacity
  ts = now
end
tokens = math.min(capacity, tokens + (now - ts) * capacity / window)
local allowed = 0
if tokens >= 1 then
  allowed = 1
  tokens = tokens - 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
local until_full = math.ceil((capacity - tokens) * window / capacity)
redis.call('PEXPIRE', KEYS[1], until_full + 1000)
local until_next = 0
if allowed == 0 then
  until_next = math.ceil((1 - tokens) * window / capacity)
end
return {allowed, math.floor(tokens * 1000), until_full, until_next}
"""


class RedisBackend:
    """Buckets shared by every replica that uses the same Redis."""

    def __init__(self, url: str, *, prefix: str = "stellar:rl:") -> None:
        import redis.asyncio as redis

        # Bounded: a Redis that is down or frozen costs a request at most this long.
        self._redis: Any = redis.from_url(
            url, socket_connect_timeout=REDIS_TIMEOUT_SECONDS, socket_timeout=REDIS_TIMEOUT_SECONDS
        )
        self._script = self._redis.register_script(_TAKE_SCRIPT)
        self._prefix = prefix

    async def take(self, key: str, policy: RateLimitPolicy) -> Decision:
        allowed, tokens_milli, until_full_ms, until_next_ms = await self._script(
            keys=[self._prefix + key],
            args=[policy.capacity, int(policy.window_seconds * 1000)],
        )
        return Decision(
            policy=policy,
            allowed=bool(allowed),
            remaining=int(tokens_milli) // 1000,
            reset_after=int(until_full_ms) / 1000,
            retry_after=int(until_next_ms) / 1000,
        )

    async def close(self) -> None:
        await self._redis.aclose()


class FailoverBackend:
    """Redis while it answers; this replica's own memory buckets while it does not.

    A choice (docs/faults.md): when Redis is down, limits keep being enforced per replica
    (a client spread over N replicas gets up to N times its allowance) rather than every
    request failing. The switch is logged once each way and reported through
    ``on_change`` (a metric); Redis is tried again every :data:`REDIS_RETRY_SECONDS`, each
    try bounded by the client's timeouts, so an outage costs no request more than that.
    """

    def __init__(
        self,
        shared: RateLimitBackend,
        local: MemoryBackend,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        self._shared = shared
        self._local = local
        self._clock = clock
        self._on_change = on_change
        # When Redis last failed (None: it answers), and when to try it again.
        self.down_since: float | None = None
        self._retry_at = 0.0

    async def take(self, key: str, policy: RateLimitPolicy) -> Decision:
        if self.down_since is None or self._clock() >= self._retry_at:
            try:
                decision = await self._shared.take(key, policy)
            except (RedisError, OSError, TimeoutError) as err:
                self._failed(err)
            else:
                self._recovered()
                return decision
        return await self._local.take(key, policy)

    def _failed(self, err: BaseException) -> None:
        now = self._clock()
        self._retry_at = now + REDIS_RETRY_SECONDS
        if self.down_since is None:
            self.down_since = now
            log.warning(
                "rate limits: Redis unavailable; using this replica's own buckets until it is back",
                error=f"{type(err).__name__}: {err}"[:200],
            )
            if self._on_change is not None:
                self._on_change(True)

    def _recovered(self) -> None:
        if self.down_since is not None:
            self.down_since = None
            log.info("rate limits: Redis is back; buckets are shared again")
            if self._on_change is not None:
                self._on_change(False)

    async def close(self) -> None:
        await self._shared.close()


class RateLimiter:
    """Presets and a backend; ``check`` answers for one client (and, for power, one server)."""

    def __init__(self, backend: RateLimitBackend, presets: Mapping[str, RateLimitPolicy]) -> None:
        self.backend = backend
        self.presets = dict(presets)

    async def backend_state(self) -> str:
        """For ``/readyz``: ``not configured``, ``ok``, or ``unavailable`` (local buckets)."""
        if not isinstance(self.backend, FailoverBackend):
            return "not configured"
        return "ok" if self.backend.down_since is None else "unavailable"

    async def check(self, preset: str, ip: str, *scope: str) -> Decision:
        policy = self.presets[preset]
        key = ":".join((policy.name, client_key(ip), *scope))
        return await self.backend.take(key, policy)

    async def check_subject(self, preset: str, subject: str) -> Decision:
        """One token of ``preset`` for ``subject`` (an account, a browser), whoever asks."""
        policy = self.presets[preset]
        return await self.backend.take(f"{policy.name}:{subject}", policy)
