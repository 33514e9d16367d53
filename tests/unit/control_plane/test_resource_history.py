"""The history recorder's folding: bucket edges, rates across restarts and gaps."""

from __future__ import annotations

import uuid

from control_plane.services.resource_history import HistoryRecorder
from shared.node_api import StatsEvent

SERVER = uuid.UUID("00000000-0000-4000-8000-000000000001")


def sample(rx: int, cpu: float = 1.0) -> StatsEvent:
    return StatsEvent(
        server=SERVER,
        sampled_at=0.0,
        cpu_percent=cpu,
        memory_bytes=1,
        network_rx_bytes=rx,
        network_tx_bytes=rx,
    )


def test_a_bucket_completes_when_its_time_is_over_or_a_later_sample_arrives() -> None:
    recorder = HistoryRecorder()
    recorder.add(sample(0), 1000.0)
    recorder.add(sample(0), 1009.0)
    assert recorder.take_complete(1009.9) == []
    done = recorder.take_complete(1010.0)
    assert [(b.resolution, b.start, b.samples) for b in done] == [(10, 1000, 2)]
    recorder.add(sample(0), 1011.0)
    # The 5-minute bucket is still open; the 10 s one of 1010 closes when 1020 arrives.
    recorder.add(sample(0), 1021.0)
    assert [(b.resolution, b.start) for b in recorder.take_complete(1021.0)] == [(10, 1010)]
    assert {(b.resolution, b.start) for b in recorder.take_all()} == {(10, 1020), (300, 900)}


def test_no_rate_across_a_container_restart_or_a_long_gap() -> None:
    recorder = HistoryRecorder()
    recorder.add(sample(10_000), 1000.0)
    recorder.add(sample(20_000), 1005.0)  # 2000 bytes/s
    recorder.add(sample(500), 1006.0)  # restarted: counters from zero again
    recorder.add(sample(1_500), 1007.0)  # 1000 bytes/s
    recorder.add(sample(9_999_999), 1100.0)  # 93 s later: says nothing of a rate
    buckets = {(b.resolution, b.start): b for b in recorder.take_all()}
    first = buckets[(10, 1000)]
    assert (first.samples, first.rate_samples) == (4, 2)
    assert first.rx_rate_sum == 3000.0
    assert buckets[(10, 1100)].rate_samples == 0
