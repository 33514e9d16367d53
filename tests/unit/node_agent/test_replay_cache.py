"""PersistentReplayCache: ids outlive the process (and a crash) until they expire."""

from __future__ import annotations

import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from node_agent.security import replay
from node_agent.security.replay import PersistentReplayCache

JTI_A = "a" * 24
JTI_B = "b" * 24
JTI_C = "c" * 24
JTI_D = "d" * 24

OpenCache = Callable[[], PersistentReplayCache]


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "replay-cache.log"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1000.0)


@pytest.fixture
def open_cache(log_path: Path, clock: FakeClock) -> Iterator[OpenCache]:
    """Open a new cache on the same log, as a (re)started agent does; all closed at teardown."""
    caches: list[PersistentReplayCache] = []

    def open_() -> PersistentReplayCache:
        cache = PersistentReplayCache(log_path, clock=clock)
        cache.open()
        caches.append(cache)
        return cache

    yield open_
    for cache in caches:
        cache.close()


def log_lines(path: Path) -> list[str]:
    return path.read_text(encoding="ascii").splitlines()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_remember_reports_first_use_and_replay(open_cache: OpenCache) -> None:
    cache = open_cache()
    assert cache.remember(JTI_A, 2000) is True
    assert cache.remember(JTI_A, 2000) is False
    assert cache.remember(JTI_B, 2000) is True
    assert len(cache) == 2


def test_remember_before_open_is_an_error(log_path: Path) -> None:
    with pytest.raises(RuntimeError, match="not open"):
        PersistentReplayCache(log_path).remember(JTI_A, 2000)


def test_open_creates_the_missing_data_directory(open_cache: OpenCache, log_path: Path) -> None:
    assert not log_path.parent.exists()
    open_cache()
    assert log_path.exists()
    assert log_lines(log_path) == []


def test_remembered_id_is_a_replay_after_reopen(open_cache: OpenCache) -> None:
    first = open_cache()
    first.remember(JTI_A, 2000)
    first.close()
    assert open_cache().remember(JTI_A, 2000) is False


def test_remembered_id_survives_a_crash_without_close(open_cache: OpenCache) -> None:
    # SIGKILL: no close(), no flush beyond the write itself.
    open_cache().remember(JTI_A, 2000)
    second = open_cache()
    assert len(second) == 1
    assert second.remember(JTI_A, 2000) is False
    assert second.remember(JTI_B, 2000) is True


def test_expired_ids_are_dropped_on_reopen(open_cache: OpenCache, clock: FakeClock) -> None:
    first = open_cache()
    first.remember(JTI_A, 1100)  # expires exactly at the reopen time
    first.remember(JTI_B, 1099)  # expired before it
    first.remember(JTI_C, 1101)  # still live
    first.close()
    clock.now = 1100.0
    second = open_cache()
    assert len(second) == 1
    assert second.remember(JTI_C, 1101) is False
    assert second.remember(JTI_A, 1200) is True
    assert second.remember(JTI_B, 1200) is True


def test_reopen_rewrites_the_log_with_live_ids_only(
    open_cache: OpenCache, clock: FakeClock, log_path: Path
) -> None:
    first = open_cache()
    for jti, expires in [(JTI_A, 1050), (JTI_B, 1500), (JTI_C, 1060)]:
        first.remember(jti, expires)
    first.remember(JTI_B, 1500)  # a replay is not written again
    assert len(log_lines(log_path)) == 3
    first.close()
    clock.now = 1100.0
    open_cache()
    assert log_lines(log_path) == [f"1500 {JTI_B}"]


def test_prune_forgets_expired_ids_and_compacts_a_mostly_dead_log(
    open_cache: OpenCache, clock: FakeClock, log_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(replay, "_COMPACT_AFTER", 2)
    cache = open_cache()
    cache.remember(JTI_A, 1010)
    cache.remember(JTI_B, 1010)
    cache.remember(JTI_C, 1010)
    assert len(log_lines(log_path)) == 3
    clock.now = 1050.0
    cache.prune()
    assert len(cache) == 0
    assert log_lines(log_path) == []
    # The log is appended to after the rewrite, and that survives a reopen.
    cache.remember(JTI_D, 2000)
    assert log_lines(log_path) == [f"2000 {JTI_D}"]
    cache.close()
    assert open_cache().remember(JTI_D, 2000) is False


def test_remember_compacts_on_its_own_when_the_log_grows(
    open_cache: OpenCache, clock: FakeClock, log_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(replay, "_COMPACT_AFTER", 2)
    cache = open_cache()
    for jti in (JTI_A, JTI_B, JTI_C):
        cache.remember(jti, 1010)
    clock.now = 1050.0
    cache.remember("e" * 24, 2000)
    cache.remember("f" * 24, 2000)  # 5 ids > 2 * _COMPACT_AFTER: prune and rewrite
    assert sorted(log_lines(log_path)) == [f"2000 {'e' * 24}", f"2000 {'f' * 24}"]
    assert cache.remember("e" * 24, 2000) is False


def test_prune_keeps_a_log_that_is_mostly_live(
    open_cache: OpenCache, clock: FakeClock, log_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(replay, "_COMPACT_AFTER", 100)
    cache = open_cache()
    cache.remember(JTI_A, 1010)
    cache.remember(JTI_B, 2000)
    clock.now = 1050.0
    cache.prune()
    assert len(cache) == 1
    assert len(log_lines(log_path)) == 2  # not worth a rewrite yet
    cache.close()
    reopened = open_cache()
    assert reopened.remember(JTI_B, 2000) is False
    assert log_lines(log_path) == [f"2000 {JTI_B}"]


def test_log_file_is_private_after_open_append_and_compaction(
    open_cache: OpenCache, clock: FakeClock, log_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = open_cache()
    assert mode(log_path) == 0o600
    cache.remember(JTI_A, 1010)
    assert mode(log_path) == 0o600
    monkeypatch.setattr(replay, "_COMPACT_AFTER", 0)
    clock.now = 1050.0
    cache.prune()
    assert log_lines(log_path) == []  # it was rewritten
    assert mode(log_path) == 0o600


def test_log_left_world_readable_is_made_private_on_open(
    open_cache: OpenCache, log_path: Path
) -> None:
    log_path.parent.mkdir(parents=True)
    log_path.write_text(f"2000 {JTI_A}\n", encoding="ascii")
    log_path.chmod(0o644)
    cache = open_cache()
    assert mode(log_path) == 0o600
    assert cache.remember(JTI_A, 2000) is False


def test_log_is_private_even_after_a_leftover_temp_file(
    open_cache: OpenCache, log_path: Path
) -> None:
    log_path.parent.mkdir(parents=True)
    leftover = log_path.with_suffix(".tmp")
    leftover.write_text("", encoding="ascii")
    leftover.chmod(0o644)
    open_cache()
    assert mode(log_path) == 0o600


def test_garbage_lines_are_ignored(open_cache: OpenCache, log_path: Path) -> None:
    log_path.parent.mkdir(parents=True)
    garbage = b"\n".join(
        [
            b"",
            b"not a line",
            b"2000",
            b"2000 ",
            b" 2000 " + JTI_B.encode(),
            b"2000 " + JTI_B.encode() + b" extra",
            b"-2000 " + JTI_B.encode(),
            b"2000.5 " + JTI_B.encode(),
            b"2000 bad/jti",
            b"2000 " + b"x" * 65,
            b"1234567890123 " + JTI_B.encode(),  # 13 digits
            b"\xff\xfe\x00 binary",
            b"2000 " + JTI_A.encode(),  # the one good line
            b"2000 " + JTI_C.encode() + b"\xe9",
            b"2000 " + JTI_D.encode(),  # torn last line: no newline, still a whole record
        ]
    )
    log_path.write_bytes(garbage)
    cache = open_cache()
    assert cache.remember(JTI_A, 2000) is False
    assert cache.remember(JTI_D, 2000) is False
    assert cache.remember(JTI_B, 2000) is True
    assert cache.remember(JTI_C, 2000) is True
    assert sorted(log_lines(log_path)) == sorted(
        f"2000 {jti}" for jti in (JTI_A, JTI_B, JTI_C, JTI_D)
    )
