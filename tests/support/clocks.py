"""Clocks that tests move by hand: the control plane's wall clock and its rate limiter's."""

from __future__ import annotations

import time


class WallClock:
    """Seconds since the epoch, starting at the real time; tests move it by whole steps."""

    def __init__(self) -> None:
        self.now = float(int(time.time()) // 30 * 30 + 5)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class MonotonicClock:
    """The rate limiter's clock."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
