"""The SFTP failure limiter: buckets refill, memory stays bounded, a full store fails closed."""

from __future__ import annotations

from node_agent.sftp.limiter import FailureLimiter
from tests.support.clocks import MonotonicClock


def test_a_key_is_refused_after_its_burst_and_allowed_again_once_refilled() -> None:
    clock = MonotonicClock()
    limiter = FailureLimiter(burst=3, refill_seconds=10, capacity=100, clock=clock)
    for _ in range(3):
        assert limiter.allows("127.0.0.2")
        limiter.failed("127.0.0.2")
    assert not limiter.allows("127.0.0.2")
    assert limiter.allows("127.0.0.3")  # others are not affected
    clock.advance(10)
    assert limiter.allows("127.0.0.2")


def test_a_flood_of_new_keys_never_grows_the_store_past_its_capacity() -> None:
    clock = MonotonicClock()
    limiter = FailureLimiter(burst=2, refill_seconds=60, capacity=50, clock=clock)
    for number in range(10_000):
        key = f"10.{number // 65536}.{number // 256 % 256}.{number % 256}"
        if limiter.allows(key):
            limiter.failed(key)
    assert len(limiter) == 50
    # Full of buckets that have not refilled: a new key is refused (fails closed) ...
    assert not limiter.allows("192.0.2.1")
    # ... until they have refilled and a sweep forgets them.
    clock.advance(120)
    assert limiter.allows("192.0.2.1")
    limiter.failed("192.0.2.1")
    assert len(limiter) == 1
