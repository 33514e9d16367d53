"""The console of a server as a WebSocket on the control plane, proxied to the node.

Each message from the browser is an event of :data:`EVENTS`: its arguments are checked by
the same input model as its HTTP twin, then the caller is authorised for it by the same
decision as every HTTP route (:func:`control_plane.security.authorization.refusal`: the
credential's scopes, the sub-user's permission node, the server), and actions are recorded
in the audit trail like their HTTP twins; a refusal is answered with an ``error`` event and
recorded as a denial. The credential and the caller's access are read again every few
seconds, so a revoked key, an ended session or a withdrawn permission closes the socket.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from yarl import URL

from control_plane.api import server_actions
from control_plane.api.routing import ApiRequest, ApiRoutes
from control_plane.api.strict_input import parse_json_body
from control_plane.db.models import Node, Server
from control_plane.db.session import transaction
from control_plane.errors import ApiError, Forbidden, InvalidRequest, RateLimited
from control_plane.keys import (
    CLIENT_IP,
    CONSOLES,
    METRICS,
    RATE_LIMITER,
    READ_SESSIONS,
    SESSIONS,
)
from control_plane.nodes.console import Admission, proxy_console
from control_plane.schemas.servers import CommandIn, PowerIn
from control_plane.security.api_keys import Scope
from control_plane.security.authn import identify
from control_plane.security.authorization import Requirement, refusal
from control_plane.security.caller import Caller
from control_plane.security.permissions import ServerAccess
from control_plane.services import audit
from control_plane.services.audit import AuditEvent
from control_plane.services.servers.access import standing

routes = ApiRoutes("console")
# Room for the longest command however a client escapes it (1024 characters, each up to a
# 12-byte surrogate-pair escape), and nothing near a size that costs to parse.
MAX_MESSAGE_BYTES = 16 * 1024
MAX_SOCKETS_PER_USER = 4
# The bucket every message takes first, as every HTTP request does (keyed by the client).
CLIENT_PRESET: Final = "api"


class ConsoleMessage(BaseModel):
    """One message from the browser: ``{"event": ..., "args": [...]}``."""

    model_config = ConfigDict(extra="forbid")

    event: str = Field(max_length=64)
    args: list[Any] = Field(default_factory=list, max_length=4)


class _NoArguments(BaseModel):
    """Events without arguments."""


Perform = Callable[[web.Application, Caller, Server, Node, Any], Awaitable[object]]


@dataclass(frozen=True)
class ConsoleEvent:
    """One event a browser may send: its arguments' model and what it needs; then either the
    action its HTTP twin runs (``perform``, with that twin's rate limit) or a request the node
    answers on this socket (forwarded without arguments)."""

    # Builds the model from the event's ``args``.
    parse: Callable[[list[Any]], BaseModel]
    requirement: Callable[[Any], Requirement]
    perform: Perform | None = None
    rate_limit: str | None = None


def _first(model: type[BaseModel], field: str) -> Callable[[list[Any]], BaseModel]:
    return lambda args: model.model_validate({field: args[0] if args else None})


EVENTS: Final[dict[str, ConsoleEvent]] = {
    "send command": ConsoleEvent(
        parse=_first(CommandIn, "command"),
        requirement=lambda _: Requirement(
            Scope.WRITE, permission=server_actions.COMMAND_PERMISSION
        ),
        perform=server_actions.command,
    ),
    "set state": ConsoleEvent(
        parse=_first(PowerIn, "action"),
        requirement=lambda action: Requirement(
            Scope.WRITE, permission=server_actions.power_permission(action)
        ),
        perform=server_actions.power,
        rate_limit=server_actions.POWER_PRESET,
    ),
    "send logs": ConsoleEvent(
        parse=lambda _args: _NoArguments(),
        requirement=lambda _: Requirement(Scope.READ, permission="console.read"),
    ),
    "send stats": ConsoleEvent(
        parse=lambda _args: _NoArguments(),
        requirement=lambda _: Requirement(Scope.READ, permission="stats.read"),
    ),
}


def same_origin(req: ApiRequest[Any, Any]) -> bool:
    """A browser's upgrade comes from the panel's own origin: ``STELLAR_PUBLIC_URL``, or
    without one the host the request was sent to. Clients that are not browsers send no
    Origin (and cannot ride a browser's cookie)."""
    origin = req.http.headers.get("Origin")
    if origin is None:
        return True
    try:
        given = URL(origin)
    except ValueError:
        return False
    public = req.settings.public_url
    if public is not None:
        expected = URL(public)
        return (given.scheme, given.host, given.port) == (
            expected.scheme,
            expected.host,
            expected.port,
        )
    return given.raw_authority == req.http.host


Reidentify = Callable[[], Awaitable[Caller | None]]
# What a console socket needs, at its admission and at every re-check.
CONSOLE_READ: Final = Requirement(Scope.READ, permission="console.read")


class ConsoleAuthority:
    """Who is on this socket and what they may do, kept fresh, and the audit of what they do.

    ``reidentify`` reads the caller's credential again (None once it no longer works)."""

    def __init__(
        self,
        http: web.Request,
        node: Node,
        server: Server,
        caller: Caller,
        access: ServerAccess,
        reidentify: Reidentify,
    ) -> None:
        self._http = http
        self.node = node
        self._path = http.path
        self.server = server
        self.caller = caller
        self.access = access
        self._reidentify = reidentify

    @classmethod
    def of_request(cls, req: ApiRequest[Any, Any], node: Node) -> ConsoleAuthority:
        """For a socket whose handshake carried the credential (cookie or API key)."""

        async def reidentify() -> Caller | None:
            # An open console is no sign of activity: the session's idle clock is left alone.
            caller = await identify(req.http, req.http[CLIENT_IP], touch=False)
            return caller if isinstance(caller, Caller) else None

        return cls(req.http, node, req.server, req.me, req.access, reidentify)

    @property
    def server_id(self) -> uuid.UUID:
        return self.server.id

    async def refresh(self) -> bool:
        """Read the credential and the access again; False when the socket must close."""
        caller = await self._reidentify()
        found = await standing(self._http.app[READ_SESSIONS], caller, self.server_id, CONSOLE_READ)
        if caller is None or isinstance(found, ApiError):
            return False
        self.caller, self.access = caller, found[1]
        return True

    async def admit(self, text: str) -> Admission:
        """Run this message's action, forward it, or refuse it; refusals are recorded, and
        actions are recorded by the action they run, as over HTTP."""
        try:
            message = ConsoleMessage.model_validate(parse_json_body(text.encode()))
        except InvalidRequest as err:
            return Admission.refuse(err.message)
        except ValidationError:
            return Admission.refuse("messages are JSON objects with an event and args")
        event, args = message.event, message.args
        rule = EVENTS.get(event)
        if rule is None:
            return Admission.refuse(f"unknown event {event!r}")
        try:
            # Each message is the twin of one HTTP request and takes the client's bucket as
            # that request would: a refusal or an action writes an audit row (and a delivery
            # to every audit webhook), which a socket must not write faster than HTTP can.
            await self._take(CLIENT_PRESET)
        except ApiError as err:
            return Admission.refuse(err.message)
        try:
            parsed = rule.parse(args)
        except ValidationError as err:
            problem = err.errors()[0].get("msg", "invalid")
            return Admission.refuse(f"invalid arguments for {event!r}: {problem}")
        error: ApiError | None = refusal(self.caller, rule.requirement(parsed), self.access)
        if error is not None:
            await self._record(
                AuditEvent(
                    "auth.denied",
                    details={
                        "path": self._path,
                        "event": event,
                        "target": "server",
                        "server": str(self.server_id),
                        "reason": error.message,
                    },
                )
            )
            return Admission.refuse(error.message)
        if rule.perform is None:
            return Admission.forward(event, [])
        try:
            if rule.rate_limit is not None:
                await self._take(rule.rate_limit, str(self.server_id))
            await rule.perform(self._http.app, self.caller, self.server, self.node, parsed)
        except ApiError as err:
            return Admission.refuse(err.message)
        return Admission.done()

    async def _take(self, preset: str, *scope: str) -> None:
        """The HTTP twin's bucket (the client's, and the server's if ``scope`` names it), or
        its 429 as an error event."""
        limiter = self._http.app[RATE_LIMITER]
        decision = await limiter.check(preset, self._http[CLIENT_IP], *scope)
        if not decision.allowed:
            self._http.app[METRICS].rate_limited.labels(preset).inc()
            wait = decision.headers(0)["Retry-After"]
            raise RateLimited(f"too many requests; try again in {wait} s")

    async def _record(self, event: AuditEvent) -> None:
        async with transaction(self._http.app[SESSIONS]) as db:
            await audit.append(db, self.caller.actor, event)


@routes.get(
    "/api/v1/servers/{server_id}/console",
    summary="Console WebSocket: output, commands, power (each message checked against permissions)",
    permission="console.read",
    transactional=False,
    calls_node=True,
)
async def console(req: ApiRequest[Any, Any]) -> web.StreamResponse:
    # Cross-site WebSocket hijacking: a page elsewhere must not ride the session cookie.
    if not same_origin(req):
        raise req.deny(Forbidden("WebSocket from another origin"), target="console")
    me, server = req.me, req.server
    with req.http.app[CONSOLES].place(server.id, me.user_id, MAX_SOCKETS_PER_USER):
        return await _relay_console(req, me, server)


async def _relay_console(
    req: ApiRequest[Any, Any], me: Caller, server: Server
) -> web.StreamResponse:
    consoles = req.http.app[CONSOLES]
    node = await req.server_node()
    nodes = req.nodes

    async def connect() -> Any:
        return await nodes.open_console(node, server.id, user=str(me.user_id))

    def renew() -> str:
        return nodes.console_token(node, server.id, user=str(me.user_id))

    # Connect to the node before upgrading, so an unreachable node is a clear 503, not a
    # socket that opens and dies.
    first = await connect()
    browser = web.WebSocketResponse(heartbeat=30, max_msg_size=MAX_MESSAGE_BYTES)
    await browser.prepare(req.http)
    handed = {"first": first}

    async def connect_once_then_fresh() -> Any:
        if handed.get("first") is not None:
            return handed.pop("first")
        return await connect()

    await req.audit_now("server.console.opened", target_type="server", target_id=str(server.id))
    authority = ConsoleAuthority.of_request(req, node)

    async def on_state(state: str, previous: str | None) -> None:
        # The control plane's record (whichever replica made it), besides the node's status.
        if not browser.closed:
            await browser.send_str(json.dumps({"event": "state", "args": [state, previous]}))

    with consoles.register(server.id, me.user_id, browser, on_state):
        await proxy_console(
            browser,
            connect=connect_once_then_fresh,
            renew=renew,
            admit=authority.admit,
            still_allowed=authority.refresh,
        )
    return browser
