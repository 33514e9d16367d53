"""The crash policy: a crashed game is restarted, unless it crashed within the window."""

from __future__ import annotations

from node_agent.servers.crash import CrashPolicy


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_first_crash_is_restarted_and_a_second_within_the_window_is_not() -> None:
    clock = Clock()
    policy = CrashPolicy(60.0, clock)

    first = policy.crashed()
    clock.now += 59.9
    second = policy.crashed()

    assert (first.restart, first.refusal) == (True, None)
    assert second.restart is False
    assert second.refusal == "it crashed before within 60 s, so it is not restarted"


def test_a_crash_a_whole_window_after_the_last_is_restarted_again() -> None:
    clock = Clock()
    policy = CrashPolicy(60.0, clock)
    policy.crashed()

    clock.now += 60.0
    assert policy.crashed().restart is True
    clock.now += 600.0
    assert policy.crashed().restart is True


def test_a_refused_crash_counts_too_so_a_game_that_keeps_crashing_stays_refused() -> None:
    clock = Clock()
    policy = CrashPolicy(60.0, clock)
    policy.crashed()

    verdicts = []
    for _ in range(3):
        clock.now += 40.0
        verdicts.append(policy.crashed().restart)
    clock.now += 61.0
    verdicts.append(policy.crashed().restart)

    assert verdicts == [False, False, False, True]


def test_a_window_of_zero_restarts_every_crash() -> None:
    clock = Clock()
    policy = CrashPolicy(0.0, clock)
    assert [policy.crashed().restart for _ in range(3)] == [True, True, True]
    assert policy.window_seconds == 0.0
