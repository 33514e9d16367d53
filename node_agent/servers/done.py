"""Knowing when a game is up: ``starting`` until its console prints a done marker.

With markers in the spec (``startup_done``), a start arms the server's :class:`DoneWatch`
before the container starts; every line the game prints reaches :func:`line_printed` (from
the console's follower, before the console's throttle, so a flood cannot hide the line),
and the first line of *this* run that shows a marker moves the server from ``starting`` to
``running``. Without markers, a start is ``running`` as soon as its container runs.

A line belongs to this run when dockerd logged it after the start was asked for: the tail of
the previous run, still being read by the console when a quick restart begins, cannot make
the new run ``running``. The console reads a run that began while it was open from its
first line (not the last ``buffer_lines`` of it), so a done line followed at once by a flood
is still seen. Any change away from ``starting`` (stop, kill, crash, exit)
disarms the watch (``ManagedServer.set_state``). Lines are whole lines (the console joins
the pieces dockerd splits, and cuts a line at 4096 characters: a marker further on is not
seen).

Plain-text markers are looked for in every line. ``regex:`` markers are RE2 (linear time,
bounded program size: ``shared/console_markers.py``), yet a complex one can still cost tens
of milliseconds on a 4096-character line, and the game decides how many lines it prints: a
server spends at most :data:`REGEX_BUDGET_SECONDS` a second searching its lines with them,
and lines past that are not searched (counted, and logged once per start). Only a game that
floods its console while its blueprint has a costly expression can have its done line
skipped so; it then stays ``starting``.

An agent that restarts while a game with markers runs finds it ``running``: the line that
said it was up is behind it, and a game that ran long enough to outlive the agent's restart
is taken to be up (``power.restore_power``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

import structlog

from node_agent.docker.output import OutputLine, docker_since
from shared.console_markers import DoneMarkers, compile_markers

if TYPE_CHECKING:
    from node_agent.servers.server import ManagedServer

log = structlog.get_logger("agent.servers")
# Time one server may spend searching its lines with ``regex:`` markers, per second.
REGEX_BUDGET_SECONDS: Final = 0.05
BUDGET_WINDOW_SECONDS: Final = 1.0


def log_seconds(timestamp: str) -> float:
    """dockerd's RFC 3339 log timestamp as seconds since the epoch."""
    return float(docker_since(timestamp))


class SearchBudget:
    """At most ``per_window`` seconds of searching in each window of ``window`` seconds."""

    def __init__(
        self,
        per_window: float = REGEX_BUDGET_SECONDS,
        window: float = BUDGET_WINDOW_SECONDS,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._per_window = per_window
        self._window = window
        self.clock = clock
        self._window_start = float("-inf")
        self._spent = 0.0

    def allows(self) -> bool:
        """Whether one more search may run now (a new window starts with nothing spent)."""
        now = self.clock()
        if now - self._window_start >= self._window:
            self._window_start, self._spent = now, 0.0
        return self._spent < self._per_window

    def spend(self, seconds: float) -> None:
        self._spent += seconds


class DoneWatch:
    """Whether the server waits for a done marker, and for the lines of which run."""

    def __init__(self, server_id: str = "", budget: SearchBudget | None = None) -> None:
        self._server_id = server_id
        self._markers: DoneMarkers | None = None
        self._not_before = 0.0
        self._budget = budget or SearchBudget()
        # Lines of this start not searched with the regex: markers (over the budget).
        self.skipped = 0
        # The container of the run waited for was seen running (after ``start`` returned).
        self.run_started = False

    @property
    def waiting(self) -> bool:
        return self._markers is not None

    def arm(self, markers: tuple[str, ...], now: float | None = None) -> bool:
        """Before a start: wait for ``markers`` in lines logged from now. False (and not
        waiting) when there are none. ``now``: the time in seconds since the epoch."""
        compiled = compile_markers(markers)
        self.run_started = False
        self.skipped = 0
        if not compiled:
            self._markers = None
            return False
        self._markers = compiled
        self._not_before = time.time() if now is None else now
        return True

    def disarm(self) -> None:
        self._markers = None
        self.run_started = False

    def marker_in(self, line: OutputLine) -> str | None:
        """The marker ``line`` shows, if the watch waits and the line is of the awaited run."""
        markers = self._markers
        if markers is None:
            return None
        try:
            if log_seconds(line.timestamp) < self._not_before:
                return None
        except ValueError:
            # dockerd always sends a timestamp; a line without one is no proof of this run.
            return None
        found = markers.find_text(line.text)
        if found is not None or not markers.expressions:
            return found
        if not self._budget.allows():
            self.skipped += 1
            if self.skipped == 1:
                log.warning(
                    "too many console lines to search with the regex: done markers",
                    server=self._server_id,
                )
            return None
        started = self._budget.clock()
        found = markers.find_expression(line.text)
        self._budget.spend(self._budget.clock() - started)
        return found


def line_printed(server: ManagedServer, line: OutputLine) -> None:
    """The game printed ``line``: if it is the awaited done line, the game is ``running``."""
    if server.state != "starting":
        return
    marker = server.done_watch.marker_in(line)
    if marker is None:
        return
    log.info("game is up", server=str(server.spec.uuid), marker=marker)
    server.set_state("running")
