"""Failed SFTP logins: the source they count under (IPv6 /64s), and the bounded tally that
reports every one of them once a window."""

from __future__ import annotations

from node_agent.sftp.limiter import source_of
from node_agent.sftp.tally import OVERFLOW_SOURCE, FailureTally
from tests.support.clocks import MonotonicClock


def test_an_ipv6_address_counts_under_its_64_and_ipv4_under_itself() -> None:
    assert source_of("2001:db8:1:2:aaaa::1") == "2001:db8:1:2::/64"
    assert source_of("2001:db8:1:2:ffff:ffff:ffff:ffff") == "2001:db8:1:2::/64"
    assert source_of("2001:db8:1:3::1") == "2001:db8:1:3::/64"
    assert source_of("fe80::1%eth0") == "fe80::/64"
    assert source_of("::ffff:192.0.2.7") == "192.0.2.7"  # IPv4-mapped: the IPv4 address
    assert source_of("192.0.2.7") == "192.0.2.7"
    assert source_of("?") == "?"


def test_a_flood_of_sources_is_counted_whole_in_a_bounded_number_of_events() -> None:
    clock = MonotonicClock()
    tally = FailureTally(capacity=8, clock=clock)
    for number in range(10_000):
        tally.count(f"10.0.{number // 256 % 256}.{number % 256}", "unknown_account")
    tally.count("10.0.0.0", "wrong_password")
    assert len(tally) == 9  # 8 sources and the overflow
    clock.advance(60)
    events = tally.drain()
    assert len(events) == 9
    assert sum(event.count for event in events) == 10_001 == tally.total
    overflow = next(event for event in events if event.source == OVERFLOW_SOURCE)
    assert overflow.count == 10_000 - 8
    first = next(event for event in events if event.source == "10.0.0.0")
    assert first.reasons == {"unknown_account": 1, "wrong_password": 1}
    assert first.seconds == 60
    # A new window starts empty.
    assert tally.drain() == []
    assert len(tally) == 0
