"""The agent's only door: every request but ``/healthz`` carries a command token.

Routes declare the action they perform with :func:`command`; the middleware verifies the
token against the exact request (method, path with query, body) and then checks that the
token's ``act`` and ``sub`` are the route's. A refused token is one log line with the reason
(never the token) and a 401 in the common error shape.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, TypeVar

import structlog
from aiohttp import web

from node_agent.keys import CLAIMS, VERIFIER
from shared.errors import Unauthenticated
from shared.protocol import CommandRejected

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
H = TypeVar("H", bound=Handler)
log = structlog.get_logger("agent.auth")
PUBLIC_PATHS = frozenset({"/healthz"})
_ATTR = "__stellar_command__"


@dataclass(frozen=True)
class CommandSpec:
    action: str
    subject: Literal["node", "server"]


def command(action: str, *, subject: Literal["node", "server"] = "node") -> Callable[[H], H]:
    """Declare the ``act`` a route performs and whether ``sub`` names the node or a server."""

    def mark(handler: H) -> H:
        setattr(handler, _ATTR, CommandSpec(action, subject))
        return handler

    return mark


def _reject(reason: str) -> Unauthenticated:
    log.warning("command rejected", reason=reason)
    return Unauthenticated("command token rejected")


@web.middleware
async def require_command(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path in PUBLIC_PATHS and request.method in {"GET", "HEAD"}:
        return await handler(request)
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise _reject("no bearer token")
    body = await request.read()
    try:
        claims = request.app[VERIFIER].verify(
            token.strip(), method=request.method, path=request.raw_path, body=body
        )
    except CommandRejected as err:
        raise _reject(err.reason) from err
    match = request.match_info
    if match.http_exception is not None:
        return await handler(request)
    spec: CommandSpec | None = getattr(match.handler, _ATTR, None)
    if spec is None:
        raise _reject("route takes no commands")
    if claims.act != spec.action:
        raise _reject("wrong act")
    expected_sub = "node" if spec.subject == "node" else f"server:{match.get('server_id', '')}"
    if claims.sub != expected_sub:
        raise _reject("wrong sub")
    structlog.contextvars.bind_contextvars(jti=claims.jti, act=claims.act, usr=claims.usr)
    request[CLAIMS] = claims
    return await handler(request)
