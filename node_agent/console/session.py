"""The protocol of one console WebSocket (``GET /api/v1/servers/{server_id}/console``).

On connect the viewer gets the server's ``status`` and the recent lines (and, while the
server installs, the installer's lines so far as ``install output``), then live output.
One task writes every outbound frame (so replies and output never interleave mid-frame),
one watches the socket's lease, and the handler reads inbound messages: each must fit in
``inbound_message_bytes`` (else aiohttp closes with 1009) and pass a per-socket rate limit
(else it is dropped, with one ``error`` event per second).

Close codes: 1000 normal, 1001 the server was deleted or the agent stops, 1009 a message
too big, 4001 the token (plus grace) expired without renewal.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

import structlog
from aiohttp import WSMsgType, web
from pydantic import ValidationError

from node_agent.console.limits import ConsoleLimits
from node_agent.console.server_console import INSTALL_OUTPUT, ConsoleViewer, console_message
from node_agent.security.socket_lease import TOKEN_EXPIRED_CLOSE_CODE, SocketLease
from node_agent.servers.server import ManagedServer
from shared.errors import ApiError
from shared.node_api import ConsoleInbound
from shared.protocol import CommandRejected
from shared.server_spec import ConsoleCommand, PowerAction, ServerStats

log = structlog.get_logger("agent.console")
StatsSource = Callable[[], Awaitable[ServerStats]]
HEARTBEAT_SECONDS: Final = 30.0


class InboundRate:
    """A token bucket: ``per_second`` messages a second, bursts of as many."""

    def __init__(self, per_second: int) -> None:
        self._rate = float(per_second)
        self._tokens = float(per_second)
        self._at = time.monotonic()
        self._last_complaint = float("-inf")

    def allow(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self._rate, self._tokens + (now - self._at) * self._rate)
        self._at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def should_complain(self) -> bool:
        """True at most once a second, so that dropping never turns into a flood of errors."""
        now = time.monotonic()
        if now - self._last_complaint >= 1.0:
            self._last_complaint = now
            return True
        return False


class OpenSockets:
    """Every console and event socket of the agent, so that shutdown can close them at once."""

    def __init__(self) -> None:
        self._viewers: set[ConsoleViewer] = set()

    def add(self, viewer: ConsoleViewer) -> None:
        self._viewers.add(viewer)

    def discard(self, viewer: ConsoleViewer) -> None:
        self._viewers.discard(viewer)

    def close_all(self) -> None:
        for viewer in list(self._viewers):
            viewer.close(1001, "agent shutting down")


async def send_frames(ws: web.WebSocketResponse, viewer: ConsoleViewer) -> None:
    """Write the viewer's frames until it is closed (then close the socket with its code)."""
    while not ws.closed:
        frame = await viewer.next_frame()
        if frame is None:
            await ws.close(code=viewer.close_code, message=viewer.close_reason.encode())
            return
        await ws.send_str(frame)


async def watch_lease(
    lease: SocketLease, viewer: ConsoleViewer, warning: str = console_message("token expiring")
) -> None:
    """Send ``warning`` before the socket's end, and end it unless it was renewed meanwhile."""
    warned_for = None
    while True:
        if lease.seconds_left() <= 0:
            viewer.close(TOKEN_EXPIRED_CLOSE_CODE, "token expired")
            return
        if warned_for != lease.expires_at and lease.warn_at() <= 0:
            warned_for = lease.expires_at
            viewer.offer(warning)
        delay = lease.warn_at() if warned_for != lease.expires_at else lease.seconds_left()
        await asyncio.sleep(max(0.05, min(delay, 5.0)))


class ConsoleSession:
    """One viewer's socket on one server's console."""

    def __init__(
        self,
        server: ManagedServer,
        viewer: ConsoleViewer,
        lease: SocketLease,
        limits: ConsoleLimits,
        stats: StatsSource,
    ) -> None:
        self._server = server
        self._viewer = viewer
        self._lease = lease
        self._limits = limits
        self._stats = stats
        self._rate = InboundRate(limits.inbound_messages_per_second)
        self._actions: set[asyncio.Task[None]] = set()

    def _error(self, message: str) -> None:
        self._viewer.offer(console_message("error", message))

    async def run(self, ws: web.WebSocketResponse, recent: list[str]) -> None:
        """Serve the socket until either side closes it."""
        self._viewer.offer(console_message("status", self._server.state))
        for line in recent:
            self._viewer.offer(console_message("console output", line))
        self._replay_install()
        sender = asyncio.create_task(send_frames(ws, self._viewer))
        lease = asyncio.create_task(watch_lease(self._lease, self._viewer))
        try:
            async for message in ws:
                if message.type != WSMsgType.TEXT:
                    continue
                if not self._rate.allow():
                    if self._rate.should_complain():
                        self._error("too many messages: dropped")
                    continue
                await self._handle(message.data)
        finally:
            for task in (sender, lease, *self._actions):
                task.cancel()
            await asyncio.gather(sender, lease, *self._actions, return_exceptions=True)

    async def _handle(self, text: str) -> None:
        try:
            inbound = ConsoleInbound.model_validate_json(text)
        except ValidationError:
            self._error("not a console message")
            return
        event, args = inbound.event, inbound.args
        if event == "send command":
            await self._command(args)
        elif event == "send logs":
            for line in self._server.console.recent():
                self._viewer.offer(console_message("console output", line))
            self._replay_install()
        elif event == "send stats":
            self._spawn(self._send_stats)
        elif event == "set state":
            self._set_state(args)
        elif event == "auth":
            self._renew(args)

    def _replay_install(self) -> None:
        """While the server installs, the installer's lines so far."""
        if self._server.state != "installing":
            return
        for line in self._server.console.install_recent():
            self._viewer.offer(console_message(INSTALL_OUTPUT, line))

    async def _command(self, args: list[str]) -> None:
        try:
            command = ConsoleCommand(command=args[0] if args else "")
            await self._server.send_command(command.command)
        except ValidationError:
            self._error("a command is one line of text without control characters")
        except ApiError as err:
            self._error(err.message)

    def _set_state(self, args: list[str]) -> None:
        try:
            action = PowerAction.model_validate({"action": args[0] if args else ""})
        except ValidationError:
            self._error("set state takes start, stop, restart or kill")
            return
        server, error = self._server, self._error

        async def act() -> None:
            try:
                await server.power(action.action)
            except ApiError as err:
                error(err.message)

        # The server owns a power action, not this socket: closing the console (the tab)
        # right after "start" must never leave the start half done.
        server.spawn(act(), name=f"console-{action.action}-{server.spec.uuid}")

    def _renew(self, args: list[str]) -> None:
        try:
            self._lease.renew(args[0] if args else "")
        except CommandRejected as err:
            log.warning("console token renewal rejected", reason=err.reason)
            self._error("token rejected")
            return
        self._viewer.offer(console_message("auth success"))

    async def _send_stats(self) -> None:
        stats = await self._stats()
        self._viewer.offer(console_message("stats", stats.model_dump(mode="json")))

    def _spawn(self, work: Callable[[], Awaitable[Any]]) -> None:
        """Run ``work()`` beside the socket; it ends (cancelled, awaited) when the socket does."""

        async def run() -> None:
            try:
                await work()
            except ApiError as err:
                self._error(err.message)
            except Exception:
                log.exception("console action failed")
                self._error("the action failed")

        task = asyncio.create_task(run())
        self._actions.add(task)
        task.add_done_callback(self._actions.discard)


def open_socket(limits: ConsoleLimits) -> web.WebSocketResponse:
    """A server-side socket with the inbound size cap and a heartbeat."""
    return web.WebSocketResponse(
        max_msg_size=limits.inbound_message_bytes, heartbeat=HEARTBEAT_SECONDS
    )
