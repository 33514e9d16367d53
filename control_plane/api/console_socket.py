"""The console for clients that cannot send a credential with a WebSocket handshake, in the
dialect of Pterodactyl's Wings (bots, client libraries, and browsers of other panels).

``GET /api/v1/servers/{id}/console/token`` gives a short-lived token for one server (see
:mod:`control_plane.security.console_tokens`) and the socket's address. The client connects
to ``/api/v1/console/socket``, sends ``{"event": "auth", "args": [token]}`` within
:data:`AUTH_SECONDS` and gets ``auth success``; before the token runs out it hears
``token expiring`` (a minute before, or half the lifetime if shorter), asks for a fresh token
and sends ``auth`` again on the same socket. An expired token stops everything but ``auth``
(``token expired``), and the socket closes :data:`EXPIRED_GRACE_SECONDS` later. A bad token
is ``jwt error``. As Wings does, ``stats`` are pushed (every 2 s) to a client that may read them.

Everything else is the console of :mod:`control_plane.api.console`: each event authorized
against the user's access at that moment, its HTTP twin's rate limit and audit, the
credential read again every few seconds, frames translated by
:class:`control_plane.api.console_dialect.WingsDialect`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import time
from typing import Any, Final

from aiohttp import web
from pydantic import BaseModel
from yarl import URL

from control_plane.api.console import (
    CONSOLE_READ,
    MAX_MESSAGE_BYTES,
    MAX_SOCKETS_PER_USER,
    ConsoleAuthority,
    same_origin,
)
from control_plane.api.console_dialect import WingsDialect, frame
from control_plane.api.routing import Access, ApiRequest, ApiRoutes
from control_plane.db.models import Node, Server
from control_plane.db.session import transaction
from control_plane.errors import ApiError, Forbidden, InvalidRequest
from control_plane.keys import CLIENT_IP, CONSOLES, NODES, READ_SESSIONS, SESSIONS, SETTINGS
from control_plane.nodes.console import (
    CLOSE_NODE_UNAVAILABLE,
    CLOSE_PERMISSIONS_CHANGED,
    Admission,
    ConsolesFull,
    proxy_console,
)
from control_plane.security import console_tokens
from control_plane.security.api_keys import Scope
from control_plane.security.authn import caller_from_grant
from control_plane.security.authorization import Requirement, refusal
from control_plane.security.caller import Caller
from control_plane.security.console_tokens import ConsoleGrant, ConsoleTokenRefused
from control_plane.security.permissions import ServerAccess
from control_plane.services import audit
from control_plane.services.audit import AuditEvent
from control_plane.services.infrastructure import get_node
from control_plane.services.servers.access import standing

routes = ApiRoutes("console")
SOCKET_PATH: Final = "/api/v1/console/socket"
AUTH_SECONDS: Final = 10.0
EXPIRED_GRACE_SECONDS: Final = 60.0
CLOSE_AUTH_FAILED: Final = 4401
CLOSE_TOKEN_EXPIRED: Final = 4001
_STATS_READ: Final = Requirement(Scope.READ, permission="stats.read")
_CREDENTIAL_GONE: Final = "the credential this token was issued for no longer works"


class ConsoleTokenOut(BaseModel):
    """A console token, the socket to send it to, and when it expires."""

    token: str
    socket: str
    expires_at: dt.datetime


def socket_url(req: ApiRequest[Any, Any]) -> str:
    """The socket's address as clients reach the panel (``STELLAR_PUBLIC_URL`` if set)."""
    base = URL(req.settings.public_url) if req.settings.public_url else req.http.url
    scheme = "wss" if base.scheme == "https" else "ws"
    return str(base.with_scheme(scheme).with_path(SOCKET_PATH).with_query(None))


@routes.get(
    "/api/v1/servers/{server_id}/console/token",
    summary="A short-lived console token for this server and the socket to send it to",
    permission="console.read",
    response=ConsoleTokenOut,
)
async def console_token(req: ApiRequest[Any, Any]) -> ConsoleTokenOut:
    return issue_token(req)


def issue_token(req: ApiRequest[Any, Any]) -> ConsoleTokenOut:
    """A token for the caller on the route's server (the route has checked ``console.read``)."""
    settings = req.settings
    token, expires = console_tokens.issue(
        settings.auth_secret or "",
        req.me,
        req.server.id,
        lifetime=settings.console_token_seconds,
    )
    return ConsoleTokenOut(
        token=token, socket=socket_url(req), expires_at=dt.datetime.fromtimestamp(expires, dt.UTC)
    )


@routes.get(
    SOCKET_PATH,
    summary="Console WebSocket taking a console token in an 'auth' event (Wings' dialect)",
    access=Access.PUBLIC,
    transactional=False,
    calls_node=True,
)
async def console_socket(req: ApiRequest[Any, Any]) -> web.StreamResponse:
    if not same_origin(req):
        raise Forbidden("WebSocket from another origin")
    client = web.WebSocketResponse(heartbeat=30, max_msg_size=MAX_MESSAGE_BYTES)
    if not client.can_prepare(req.http).ok:
        raise InvalidRequest("this address is a WebSocket: connect with a WebSocket client")
    await client.prepare(req.http)
    await TokenConsole(req.http, client).run()
    return client


class TokenConsole:
    """One token socket: its authentication, its expiry, then the relay."""

    def __init__(self, http: web.Request, client: web.WebSocketResponse) -> None:
        self._http = http
        self._client = client
        self._settings = http.app[SETTINGS]
        self._dialect = WingsDialect()
        self._renewed = asyncio.Event()
        self._grant: ConsoleGrant | None = None
        self._authority: ConsoleAuthority | None = None

    async def _send(self, event: str, *args: Any) -> None:
        if not self._client.closed:
            await self._client.send_str(frame(event, *args))

    async def _refuse(self, reason: str, code: int = CLOSE_AUTH_FAILED) -> None:
        await self._send("jwt error", reason)
        await self._client.close(code=code, message=reason.encode()[:120])

    def _grant_of(self, token: Any) -> ConsoleGrant:
        return console_tokens.verify(self._settings.auth_secret or "", token)

    async def _caller(self, grant: ConsoleGrant) -> Caller | None:
        user_agent = self._http.headers.get("User-Agent", "")[:255]
        return await caller_from_grant(self._http, grant, self._http[CLIENT_IP], user_agent)

    async def run(self) -> None:
        grant = await self._first_auth()
        if grant is None:
            return
        caller = await self._caller(grant)
        if caller is None:
            return await self._refuse(_CREDENTIAL_GONE)
        found = await standing(self._http.app[READ_SESSIONS], caller, grant.server_id, CONSOLE_READ)
        if isinstance(found, ApiError):
            return await self._refuse(found.message)
        server, access = found
        async with transaction(self._http.app[READ_SESSIONS]) as db:
            node = await get_node(db, server.node_id)
        if node is None:
            return await self._refuse("no such server")
        consoles = self._http.app[CONSOLES]
        try:
            with consoles.place(server.id, caller.user_id, MAX_SOCKETS_PER_USER):
                self._grant = grant
                await self._relay(server, node, caller, access)
        except ConsolesFull as err:
            await self._refuse(err.message)

    async def _first_auth(self) -> ConsoleGrant | None:
        """The grant of the first message, which must be ``auth``; None once refused."""
        try:
            message = await self._client.receive(timeout=AUTH_SECONDS)
        except TimeoutError:
            await self._refuse("authenticate first: send an 'auth' event with a console token")
            return None
        event, args = _event_of(message.data if isinstance(message.data, str) else "")
        if event != "auth":
            await self._refuse("authenticate first: send an 'auth' event with a console token")
            return None
        try:
            return self._grant_of(args[0] if args else "")
        except ConsoleTokenRefused as err:
            await self._refuse(f"the token is {err.reason}")
            return None

    async def _relay(
        self, server: Server, node: Node, caller: Caller, access: ServerAccess
    ) -> None:
        nodes = self._http.app[NODES]

        async def connect() -> Any:
            return await nodes.open_console(node, server.id, user=str(caller.user_id))

        def renew() -> str:
            return nodes.console_token(node, server.id, user=str(caller.user_id))

        try:
            first = await connect()
        except ApiError as err:
            await self._send("daemon error", err.message)
            await self._client.close(code=CLOSE_NODE_UNAVAILABLE, message=b"node unavailable")
            return
        handed = {"first": first}

        async def connect_once_then_fresh() -> Any:
            if handed.get("first") is not None:
                return handed.pop("first")
            return await connect()

        async def reidentify() -> Caller | None:
            return await self._caller(self._grant) if self._grant is not None else None

        self._authority = ConsoleAuthority(self._http, node, server, caller, access, reidentify)
        await self._send("auth success")
        async with transaction(self._http.app[SESSIONS]) as db:
            await audit.append(
                db,
                caller.actor,
                AuditEvent("server.console.opened", target_type="server", target_id=str(server.id)),
            )
        watcher = asyncio.create_task(self._watch_expiry(), name=f"console-token-{server.id}")
        try:
            consoles = self._http.app[CONSOLES]
            with consoles.register(server.id, caller.user_id, self._client, self._on_state):
                await proxy_console(
                    self._client,
                    connect=connect_once_then_fresh,
                    renew=renew,
                    admit=self._admit,
                    still_allowed=self._authority.refresh,
                    translate=self._dialect.translate,
                    pulse=self._pulse,
                )
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)

    async def _on_state(self, state: str, _previous: str | None) -> None:
        """A state change recorded by any replica: Wings' ``status``, unless just said."""
        for text in self._dialect.recorded_state(state):
            if not self._client.closed:
                await self._client.send_str(text)

    async def _pulse(self) -> Admission:
        """Wings pushes stats: ask the node for them on the client's behalf, while it may."""
        assert self._authority is not None
        if self._dialect.gated:
            return Admission.done()
        if refusal(self._authority.caller, _STATS_READ, self._authority.access) is not None:
            return Admission.done()
        return Admission.forward("send stats", [])

    async def _admit(self, text: str) -> Admission:
        """``auth`` renews the token; anything else needs a live token, then is the console's."""
        assert self._authority is not None
        assert self._grant is not None
        event, args = _event_of(text)
        if event == "auth":
            await self._renew(args[0] if args else "")
            return Admission.done()
        if time.time() >= self._grant.expires_at:
            await self._send("token expired")
            return Admission.done()
        return await self._authority.admit(text)

    async def _renew(self, token: Any) -> None:
        assert self._authority is not None
        assert self._grant is not None
        try:
            grant = self._grant_of(token)
        except ConsoleTokenRefused as err:
            await self._send("jwt error", f"the token is {err.reason}")
            return
        if (grant.server_id, grant.user_id) != (self._grant.server_id, self._grant.user_id):
            await self._send("jwt error", "the token is for another server or user")
            return
        caller = await self._caller(grant)
        if caller is None:
            await self._send("jwt error", _CREDENTIAL_GONE)
            return
        self._grant = grant
        self._authority.caller = caller
        if not await self._authority.refresh():
            await self._client.close(code=CLOSE_PERMISSIONS_CHANGED, message=b"permissions changed")
            return
        self._dialect.gated = False
        self._renewed.set()
        await self._send("auth success")

    async def _watch_expiry(self) -> None:
        """``token expiring`` once per token, then ``token expired``, then the close."""
        warning = min(60.0, self._settings.console_token_seconds / 2)
        warned_for: float | None = None
        while not self._client.closed:
            assert self._grant is not None
            expires = self._grant.expires_at
            left = expires - time.time()
            if left <= -EXPIRED_GRACE_SECONDS:
                await self._client.close(code=CLOSE_TOKEN_EXPIRED, message=b"token expired")
                return
            if left <= 0 and not self._dialect.gated:
                self._dialect.gated = True
                await self._send("token expired")
            elif 0 < left <= warning and warned_for != expires:
                warned_for = expires
                await self._send("token expiring")
            if left > warning:
                wait = left - warning
            elif left > 0:
                wait = left
            else:
                wait = left + EXPIRED_GRACE_SECONDS
            self._renewed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._renewed.wait(), timeout=max(wait, 0.05))


def _event_of(text: str) -> tuple[str | None, list[Any]]:
    """The event name and arguments of a frame, or (None, []) if it is not one."""
    try:
        message = json.loads(text)
        event, args = message.get("event"), message.get("args") or []
    except (ValueError, AttributeError):
        return None, []
    if not isinstance(event, str) or not isinstance(args, list):
        return None, []
    return event, args
