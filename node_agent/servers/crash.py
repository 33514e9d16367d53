"""A crash of a game and what follows: restarted, or left ``crashed`` if it keeps crashing.

:class:`CrashPolicy` decides (restart unless the server already crashed within the
crash-loop window, ``crash_loop_window_seconds``); :func:`handle_crash` does it: state
``crashed``, a console notice, a ``CrashEvent``, then a restart in the background, or
desired power ``stopped`` (and ``crashed`` kept in the record) when the policy refuses.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog

from node_agent.docker.containers import ContainerState
from node_agent.servers import power
from shared.node_api import CrashEvent

if TYPE_CHECKING:
    from node_agent.servers.server import ManagedServer

log = structlog.get_logger("agent.servers")


@dataclass(frozen=True)
class CrashVerdict:
    """Whether to restart after this crash, and if not, why (for the user)."""

    restart: bool
    refusal: str | None = None


class CrashPolicy:
    """Restart a crashed game, unless it crashed before within ``window_seconds``.

    Every crash counts, restarted or not: a game that keeps crashing is refused again until
    it has run for a whole window without one.
    """

    def __init__(self, window_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._window = window_seconds
        self._clock = clock
        self._last_crash_at: float | None = None

    @property
    def window_seconds(self) -> float:
        return self._window

    def crashed(self) -> CrashVerdict:
        """Count a crash now; whether the game is restarted after it."""
        now = self._clock()
        looping = self._last_crash_at is not None and now - self._last_crash_at < self._window
        self._last_crash_at = now
        if looping:
            return CrashVerdict(
                restart=False,
                refusal=f"it crashed before within {self._window:g} s, so it is not restarted",
            )
        return CrashVerdict(restart=True)


async def handle_crash(server: ManagedServer, state: ContainerState) -> None:
    """The game exited without being asked to: say so, then restart it if the policy lets."""
    verdict = server.crash_policy.crashed()
    reason = "out of memory" if state.oom_killed else f"exit code {state.exit_code}"
    if verdict.refusal is not None:
        reason = f"{reason}; {verdict.refusal}"
        await server.want("stopped", crashed=True)
    log.warning("server crashed", server=str(server.spec.uuid), reason=reason)
    server.set_state("crashed")
    server.console.notice(f"server crashed ({reason})")
    server.services.events.publish(
        CrashEvent(
            server=server.spec.uuid,
            exit_code=state.exit_code,
            oom_killed=state.oom_killed,
            restarting=verdict.restart,
            reason=reason,
        )
    )
    if verdict.restart:
        server.spawn(_restart_after_crash(server), name=f"crash-restart-{server.spec.uuid}")


async def _restart_after_crash(server: ManagedServer) -> None:
    async with server.locked():
        if server.state == "crashed" and server.record.desired_power == "running":
            server.console.notice("restarting after the crash")
            await power.start(server)
