"""One server's console: its output followed from Docker, recent lines, and its viewers.

:class:`ServerConsole` follows the game container's log stream whenever the container runs
(:meth:`ServerConsole.wake` is called when it starts, and when the agent finds it running).
Each line is first handed to the console's listener (the server's done-marker watch, which
must see every line, so it comes before the throttle); then lines pass the
:class:`OutputThrottle`, go into a ring buffer for new viewers and to each open socket's
bounded queue; a viewer that cannot keep up loses lines, never the game.

While the server installs, the installer's lines arrive through :meth:`ServerConsole.install_line`
and go out as ``install output`` frames, through the same throttle, into a ring buffer of their
own (replayed to a viewer who connects during the install).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any, Final

import structlog

from node_agent.console.limits import ConsoleLimits
from node_agent.console.throttle import OutputThrottle, throttle_notice
from node_agent.docker.containers import ContainerRuntime
from node_agent.docker.output import OutputLine, docker_since
from shared.errors import ApiError, RateLimited
from shared.server_spec import ServerState

log = structlog.get_logger("agent.console")
# After the log stream ended while the container still runs, wait this long to follow again.
REFOLLOW_DELAY_SECONDS: Final = 0.5
AGENT_PREFIX: Final = "[stellar]"
CONSOLE_OUTPUT: Final = "console output"
INSTALL_OUTPUT: Final = "install output"
LineListener = Callable[[OutputLine], None]


def console_message(event: str, *args: Any) -> str:
    """One outbound console frame as JSON text."""
    return json.dumps({"event": event, "args": list(args)}, separators=(",", ":"))


class ConsoleViewer:
    """One open console socket: a bounded queue of JSON frames, and why it must close."""

    def __init__(self, max_messages: int) -> None:
        self._frames: deque[str] = deque()
        self._max_messages = max_messages
        # Set whenever a frame is queued or the viewer is closed: one thing to wait for, so
        # the sender needs no helper tasks that could outlive it.
        self._changed = asyncio.Event()
        # Set whenever a frame is taken (there is room again).
        self._taken = asyncio.Event()
        self.dropped = 0
        self.closed = False
        self.close_code = 1000
        self.close_reason = ""

    def offer(self, frame: str) -> None:
        """Queue ``frame``; a viewer that is this far behind loses it."""
        if len(self._frames) >= self._max_messages:
            self.dropped += 1
            return
        self._frames.append(frame)
        self._changed.set()

    def close(self, code: int, reason: str) -> None:
        self.close_code, self.close_reason = code, reason
        self.closed = True
        self._changed.set()

    async def next_frame(self) -> str | None:
        """The next frame to send, or None once the viewer is closed (queued frames dropped)."""
        while not self.closed and not self._frames:
            self._changed.clear()
            await self._changed.wait()
        if self.closed:
            return None
        self._taken.set()
        return self._frames.popleft()

    async def room(self) -> None:
        """Wait until a frame offered now would be queued (or the viewer is closed): for a
        producer that must not lose frames here (the node's event stream, whose own
        subscription queue counts what it loses and says so)."""
        while not self.closed and len(self._frames) >= self._max_messages:
            self._taken.clear()
            await self._taken.wait()


class ServerConsole:
    """Recent output of one server's game and everyone watching it."""

    def __init__(
        self,
        server_id: uuid.UUID,
        container: str,
        runtime: ContainerRuntime,
        limits: ConsoleLimits,
        on_throttle: Callable[[int], None] | None = None,
    ) -> None:
        """``on_throttle``: told how many lines each throttled window dropped (metrics)."""
        self._on_throttle = on_throttle
        self._server_id = server_id
        self._container = container
        self._runtime = runtime
        self._limits = limits
        self._recent: deque[str] = deque(maxlen=limits.buffer_lines)
        self._install_recent: deque[str] = deque(maxlen=limits.buffer_lines)
        self._viewers: set[ConsoleViewer] = set()
        self._throttle = OutputThrottle(limits.lines_per_second)
        self._notice_timer: asyncio.TimerHandle | None = None
        # Which kind of output the next "lines dropped" notice belongs to.
        self._notice_event = CONSOLE_OUTPUT
        self._wake = asyncio.Event()
        self._follower: asyncio.Task[None] | None = None
        self._listener: LineListener | None = None
        # Runs that start after this moment are followed from their first line (no tail).
        self._opened_at = time.time()

    # --- output ----------------------------------------------------------------------------

    def listen(self, listener: LineListener) -> None:
        """Hand every line the game prints to ``listener`` (one listener; synchronous)."""
        self._listener = listener

    def wake(self) -> None:
        """The container (re)started or was found running: follow its output."""
        if self._follower is None:
            self._follower = asyncio.create_task(
                self._follow_forever(), name=f"console-{self._server_id}"
            )
        self._wake.set()

    async def close(self) -> None:
        """Stop following and close every viewer (the game keeps running)."""
        for viewer in list(self._viewers):
            viewer.close(1001, "server console closed")
        if self._notice_timer is not None:
            self._notice_timer.cancel()
        if self._follower is not None:
            self._follower.cancel()
            await asyncio.gather(self._follower, return_exceptions=True)
            self._follower = None

    async def _follow_forever(self) -> None:
        last_timestamp: str | None = None
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                state = await self._runtime.find(self._container)
                if state is None or not state.running:
                    continue
                # First time: the current run (it began after the last exit); all of it if it
                # began while this console was open, else (found running) only its tail.
                since = last_timestamp or state.finished_at
                tail = (
                    None
                    if last_timestamp or self._began_since_open(state.started_at)
                    else self._limits.buffer_lines
                )
                stream = self._runtime.follow_output(self._container, since=since, tail=tail)
                async for line in stream:
                    if last_timestamp is not None and line.timestamp <= last_timestamp:
                        continue
                    last_timestamp = line.timestamp
                    self._hear(line)
                    self._take(line.text)
                state = await self._runtime.find(self._container)
            except ApiError as err:
                log.warning("console stream broke", server=str(self._server_id), error=err.message)
                state = None
                await asyncio.sleep(REFOLLOW_DELAY_SECONDS)
                self._wake.set()
            if state is not None and state.running:
                await asyncio.sleep(REFOLLOW_DELAY_SECONDS)
                self._wake.set()

    def _began_since_open(self, started_at: str | None) -> bool:
        """Whether the run that started at ``started_at`` began after this console opened.

        Every line of such a run is new to this agent, and its done line may be among its
        first ones: a tail would drop those when the game prints more than the buffer holds
        before the follower's request reaches dockerd (``done.py``).
        """
        if started_at is None:
            return False
        try:
            return float(docker_since(started_at)) >= self._opened_at
        except ValueError:
            return False

    def _hear(self, line: OutputLine) -> None:
        if self._listener is None:
            return
        try:
            self._listener(line)
        except Exception:
            # The listener's failure must not stop the output reaching the viewers.
            log.exception("console line listener failed", server=str(self._server_id))

    def _take(self, text: str, event: str = CONSOLE_OUTPUT) -> None:
        loop = asyncio.get_running_loop()
        dropped = self._throttle.roll(loop.time())
        if dropped:
            self._throttled(dropped)
            self._emit(throttle_notice(dropped), self._notice_event)
        self._notice_event = event
        if self._throttle.admit():
            self._emit(text, event)
        elif self._notice_timer is None:
            self._notice_timer = loop.call_at(self._throttle.window_end, self._flush_notice)

    def _flush_notice(self) -> None:
        self._notice_timer = None
        dropped = self._throttle.take_dropped()
        if dropped:
            self._throttled(dropped)
            self._emit(throttle_notice(dropped), self._notice_event)

    def _throttled(self, dropped: int) -> None:
        if self._on_throttle is not None:
            self._on_throttle(dropped)

    def _emit(self, text: str, event: str = CONSOLE_OUTPUT) -> None:
        kept = self._install_recent if event == INSTALL_OUTPUT else self._recent
        kept.append(text)
        if self._viewers:
            frame = console_message(event, text)
            for viewer in self._viewers:
                viewer.offer(frame)

    # --- the installer's output --------------------------------------------------------------

    def install_started(self) -> None:
        """A new install begins: forget the previous installer's lines."""
        self._install_recent.clear()

    def install_line(self, text: str) -> None:
        """A line the installer printed, shown to viewers as ``install output``."""
        self._take(text, INSTALL_OUTPUT)

    def install_notice(self, text: str) -> None:
        """A line from the agent about the install (how it ended), never throttled away."""
        self._emit(f"{AGENT_PREFIX} {text}", INSTALL_OUTPUT)

    def install_recent(self) -> list[str]:
        """The current (or last) installer's lines kept for viewers."""
        return list(self._install_recent)

    def notice(self, text: str) -> None:
        """A line from the agent itself (crash, restart), shown like game output."""
        self._emit(f"{AGENT_PREFIX} {text}")

    def status(self, state: ServerState) -> None:
        """Tell every viewer the server's new state."""
        frame = console_message("status", state)
        for viewer in self._viewers:
            viewer.offer(frame)

    def recent(self, lines: int | None = None) -> list[str]:
        """The last ``lines`` lines (all that are kept when None)."""
        kept = list(self._recent)
        return kept if lines is None else kept[-lines:] if lines > 0 else []

    # --- viewers ---------------------------------------------------------------------------

    def add_viewer(self) -> ConsoleViewer:
        """A new viewer, or :class:`RateLimited` when the server has its fill of them."""
        if len(self._viewers) >= self._limits.sockets_per_server:
            raise RateLimited(
                f"this server already has {self._limits.sockets_per_server} open consoles",
                headers={"Retry-After": "5"},
            )
        viewer = ConsoleViewer(self._limits.viewer_queue_messages)
        self._viewers.add(viewer)
        return viewer

    def remove_viewer(self, viewer: ConsoleViewer) -> None:
        with contextlib.suppress(KeyError):
            self._viewers.remove(viewer)
