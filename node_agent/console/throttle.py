"""A per-second cap on a server's output lines: the excess is dropped and counted."""

from __future__ import annotations

from shared.node_api import THROTTLE_NOTICE as NOTICE


class OutputThrottle:
    """Passes at most ``limit`` lines per window; counts what it drops in the current window."""

    def __init__(self, limit: int, window_seconds: float = 1.0) -> None:
        self._limit = limit
        self._window = window_seconds
        self._window_start = float("-inf")
        self._passed = 0
        self._dropped = 0

    @property
    def window_end(self) -> float:
        return self._window_start + self._window

    def roll(self, now: float) -> int:
        """Start a new window if the current one is over; the lines the old one dropped."""
        if now < self.window_end:
            return 0
        dropped = self._dropped
        self._window_start = now
        self._passed = 0
        self._dropped = 0
        return dropped

    def admit(self) -> bool:
        """Whether one more line may pass in this window (call :meth:`roll` first)."""
        if self._passed < self._limit:
            self._passed += 1
            return True
        self._dropped += 1
        return False

    def take_dropped(self) -> int:
        """The lines dropped so far in this window, and forget them (they are reported)."""
        dropped, self._dropped = self._dropped, 0
        return dropped


def throttle_notice(dropped: int) -> str:
    """The one line a viewer sees in place of the lines a window dropped."""
    return NOTICE.format(dropped=dropped)
