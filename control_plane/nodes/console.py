"""The console WebSocket proxy: browser ⇄ control plane ⇄ node agent.

The browser never talks to a node. Each message from the browser is admitted (or refused
with an ``error`` event) by the caller of :func:`proxy_console` before it is forwarded; the
node connection is re-opened with a fresh command token when the node closes it (tokens are
short-lived); and a change of the user's permissions closes their open consoles at once (in
this process) or within the re-check interval (in other replicas).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import structlog
from aiohttp import web

from control_plane.errors import Forbidden

log = structlog.get_logger("console")
CLOSE_PERMISSIONS_CHANGED = 4403
CLOSE_NODE_UNAVAILABLE = 4502
RECHECK_SECONDS = 10.0
MAX_RECONNECTS = 5
PULSE_SECONDS = 2.0
# When the service stops: how long each open console is given to close.
CLOSE_SECONDS = 2.0


class ConsolesFull(Forbidden):
    """The user has every console place on the server taken (``ConsoleSessions.place``)."""


@dataclass(frozen=True)
class Admission:
    """What became of one message from the browser: an event to forward to the node, a
    refusal to answer with, or neither (the control plane did what it asked)."""

    event: str | None
    args: list[Any]
    refusal: str | None = None

    @classmethod
    def forward(cls, event: str, args: list[Any]) -> Admission:
        return cls(event, args)

    @classmethod
    def refuse(cls, message: str) -> Admission:
        return cls(None, [], message)

    @classmethod
    def done(cls) -> Admission:
        return cls(None, [])


# Tells one console the server's recorded state (state, previous).
StatePush = Callable[[str, str | None], Awaitable[None]]


async def _no_push(_state: str, _previous: str | None) -> None:
    return None


class ConsoleSessions:
    """The open console sockets of this process, by server and user."""

    def __init__(self) -> None:
        self._open: dict[tuple[uuid.UUID, uuid.UUID], dict[web.WebSocketResponse, StatePush]] = (
            defaultdict(dict)
        )
        self._pushing: set[asyncio.Task[None]] = set()
        # Places taken, by server and user: from before the node is asked until the socket
        # ends, so that sockets opened at the same moment count each other.
        self._places: dict[tuple[uuid.UUID, uuid.UUID], int] = {}
        self._closing = False

    @contextlib.contextmanager
    def place(self, server_id: uuid.UUID, user_id: uuid.UUID, limit: int) -> Iterator[None]:
        """Take one of the user's ``limit`` console places on the server for the block:
        checked and taken in one step, before any ``await``. Forbidden when all are taken
        (the node's own cap is per server: one user holding it would lock out the rest)."""
        key = (server_id, user_id)
        taken = self._places.get(key, 0)
        if taken >= limit:
            raise ConsolesFull(f"at most {limit} consoles per server at once")
        self._places[key] = taken + 1
        try:
            yield
        finally:
            left = self._places.pop(key) - 1
            if left:
                self._places[key] = left

    @contextlib.contextmanager
    def register(
        self,
        server_id: uuid.UUID,
        user_id: uuid.UUID,
        socket: web.WebSocketResponse,
        on_state: StatePush = _no_push,
    ) -> Any:
        """Count the socket as open; ``on_state`` tells it each recorded state change."""
        key = (server_id, user_id)
        self._open[key][socket] = on_state
        if self._closing:  # opened while the service stops
            closing = asyncio.ensure_future(_going_away(socket))
            self._pushing.add(closing)
            closing.add_done_callback(self._pushing.discard)
        try:
            yield
        finally:
            self._open[key].pop(socket, None)
            if not self._open[key]:
                del self._open[key]

    def push_state(self, server_id: uuid.UUID, state: str, previous: str | None) -> None:
        """Tell every console open on the server (each on its own: a slow one holds no one)."""
        for (server, _user), sockets in list(self._open.items()):
            if server != server_id:
                continue
            for socket, on_state in list(sockets.items()):
                if socket.closed:
                    continue
                task = asyncio.create_task(self._push(on_state, state, previous))
                self._pushing.add(task)
                task.add_done_callback(self._pushing.discard)

    @staticmethod
    async def _push(on_state: StatePush, state: str, previous: str | None) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError, aiohttp.ClientError):
            await on_state(state, previous)

    def open_servers(self) -> set[uuid.UUID]:
        """The servers with a console open in this process."""
        return {server for server, _user in self._open}

    def count(self, server_id: uuid.UUID, user_id: uuid.UUID) -> int:
        """The user's places taken on the server (``place``)."""
        return self._places.get((server_id, user_id), 0)

    def total(self) -> int:
        """Every console open in this process."""
        return sum(len(sockets) for sockets in self._open.values())

    async def close_for(self, server_id: uuid.UUID, user_id: uuid.UUID) -> None:
        """Close every console this user has open on this server (permissions changed)."""
        for socket in list(self._open.get((server_id, user_id), ())):
            await socket.close(code=CLOSE_PERMISSIONS_CHANGED, message=b"permissions changed")

    async def close_server(self, server_id: uuid.UUID) -> None:
        """Close every console open on this server (it was suspended)."""
        for (server, user), _sockets in list(self._open.items()):
            if server == server_id:
                await self.close_for(server, user)

    async def close_all(self) -> None:
        """The service is stopping: close every console (1001, going away), all at once, each
        given ``CLOSE_SECONDS`` for the close handshake (a stalled browser does not hold the
        stop); a console registered from now on is closed as it registers."""
        self._closing = True
        closes = [
            _going_away(socket) for sockets in list(self._open.values()) for socket in list(sockets)
        ]
        await asyncio.gather(*closes, return_exceptions=True)


async def _going_away(socket: web.WebSocketResponse) -> None:
    """Close ``socket`` as going away, given ``CLOSE_SECONDS`` (a cut-short close drops it)."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(CLOSE_SECONDS):
            await socket.close(code=aiohttp.WSCloseCode.GOING_AWAY, message=b"shutting down")


NodeConnector = Callable[[], Awaitable[aiohttp.ClientWebSocketResponse]]
Admit = Callable[[str], Awaitable[Admission]]


# What the client sees of one node frame (a dialect of the protocol): the frames to send.
Translate = Callable[[str], list[str]]


def _as_is(frame: str) -> list[str]:
    return [frame]


async def _error(browser: web.WebSocketResponse, message: str, translate: Translate) -> None:
    for frame in translate(json.dumps({"event": "error", "args": [message]})):
        await browser.send_str(frame)


async def _browser_to_node(
    browser: web.WebSocketResponse,
    node: Callable[[], aiohttp.ClientWebSocketResponse],
    admit: Admit,
    translate: Translate,
) -> None:
    async for message in browser:
        if message.type != aiohttp.WSMsgType.TEXT:
            continue
        # Shielded: a socket that closes meanwhile must not cut an action (or its database
        # session) in half; it finishes, then the relay ends.
        admission = await asyncio.shield(admit(message.data))
        if admission.refusal is not None:
            await _error(browser, admission.refusal, translate)
        if admission.event is None:
            continue
        try:
            await node().send_json({"event": admission.event, "args": admission.args})
        except (ConnectionError, aiohttp.ClientError):
            # The node connection is being opened again (token lifetime, agent restart).
            await _error(browser, "the node is reconnecting; ask again in a moment", translate)


# The node's own bookkeeping about the token: handled here, never shown to the browser.
_TOKEN_EVENTS = frozenset({"token expiring", "auth success"})


async def _node_to_browser(
    browser: web.WebSocketResponse,
    node: aiohttp.ClientWebSocketResponse,
    renew: Callable[[], str],
    translate: Translate,
) -> None:
    async for message in node:
        if message.type == aiohttp.WSMsgType.TEXT:
            try:
                event = json.loads(message.data).get("event")
            except (ValueError, AttributeError):
                event = None
            if event == "token expiring":
                await node.send_json({"event": "auth", "args": [renew()]})
            if event in _TOKEN_EVENTS:
                continue
            for frame in translate(message.data):
                await browser.send_str(frame)
        elif message.type == aiohttp.WSMsgType.ERROR:
            break


async def proxy_console(
    browser: web.WebSocketResponse,
    *,
    connect: NodeConnector,
    renew: Callable[[], str],
    admit: Admit,
    still_allowed: Callable[[], Awaitable[bool]],
    translate: Translate = _as_is,
    pulse: Callable[[], Awaitable[Admission]] | None = None,
) -> None:
    """Relay until the browser leaves, access is lost, or the node stays away.

    ``admit`` decides each browser message; ``still_allowed`` is asked every
    :data:`RECHECK_SECONDS` and closes the socket when it says no; ``translate`` turns each
    node frame into what the client gets; ``pulse``, asked every :data:`PULSE_SECONDS`, may
    name an event to send to the node on the client's behalf (stats pushed to the client).
    """
    node = await connect()
    holder = {"node": node}

    async def recheck() -> None:
        while True:
            await asyncio.sleep(RECHECK_SECONDS)
            # Shielded for the same reason: a re-check's database session is never abandoned
            # half-open when the socket closes during it.
            if not await asyncio.shield(still_allowed()):
                await browser.close(code=CLOSE_PERMISSIONS_CHANGED, message=b"permissions changed")
                return

    async def relay_from_node() -> None:
        failures = 0
        while not browser.closed:
            await _node_to_browser(browser, holder["node"], renew, translate)
            if browser.closed:
                return
            # The node closed (token lifetime, agent restart): reconnect with a fresh token.
            failures += 1
            if failures > MAX_RECONNECTS:
                await browser.close(code=CLOSE_NODE_UNAVAILABLE, message=b"node unavailable")
                return
            await asyncio.sleep(min(0.5 * failures, 3.0))
            try:
                holder["node"] = await connect()
                failures = 0
            except Exception as err:
                log.warning("console reconnect failed", error=str(err))

    async def beat(pulse: Callable[[], Awaitable[Admission]]) -> None:
        while True:
            await asyncio.sleep(PULSE_SECONDS)
            admission = await pulse()
            if admission.event is not None:
                with contextlib.suppress(ConnectionError, aiohttp.ClientError):
                    await holder["node"].send_json(
                        {"event": admission.event, "args": admission.args}
                    )

    tasks = [
        asyncio.create_task(relay_from_node()),
        asyncio.create_task(recheck()),
        asyncio.create_task(_browser_to_node(browser, lambda: holder["node"], admit, translate)),
    ]
    if pulse is not None:
        tasks.append(asyncio.create_task(beat(pulse)))
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await holder["node"].close()
        await browser.close()
