"""The agent's only door: every request but ``/healthz`` carries a command token.

Routes declare the action they perform with :func:`command`; the middleware verifies the
token against the exact request (method, path with query, body) and then checks that the
token's ``act`` and ``sub`` are the route's. A refused token is one log line with the reason
(never the token) and a 401 in the common error shape.

A route declared with ``streamed_body=True`` (uploads) is verified without reading its body:
its token must carry the hash of the *empty* body, and the route itself bounds the body by a
size that the token binds through the query string.
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
    streamed_body: bool = False


def command(
    action: str, *, subject: Literal["node", "server"] = "node", streamed_body: bool = False
) -> Callable[[H], H]:
    """Declare the ``act`` a route performs and whether ``sub`` names the node or a server.

    ``streamed_body``: the route reads its (large) body itself, so the token's ``bdh`` is
    the hash of ``b""`` and the route must bound the body by a signed query parameter.
    """

    def mark(handler: H) -> H:
        setattr(handler, _ATTR, CommandSpec(action, subject, streamed_body))
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
    match = request.match_info
    route_spec: CommandSpec | None = (
        getattr(match.handler, _ATTR, None) if match.http_exception is None else None
    )
    # A streamed route's body is not read here (nor hashed): its token signs the empty body.
    streamed = route_spec is not None and route_spec.streamed_body
    body = b"" if streamed or not request.body_exists else await request.read()
    try:
        claims = request.app[VERIFIER].verify(
            token.strip(), method=request.method, path=request.raw_path, body=body
        )
    except CommandRejected as err:
        raise _reject(err.reason) from err
    if match.http_exception is not None:
        return await handler(request)
    if route_spec is None:
        raise _reject("route takes no commands")
    if claims.act != route_spec.action:
        raise _reject("wrong act")
    expected_sub = (
        "node" if route_spec.subject == "node" else f"server:{match.get('server_id', '')}"
    )
    if claims.sub != expected_sub:
        raise _reject("wrong sub")
    structlog.contextvars.bind_contextvars(jti=claims.jti, act=claims.act, usr=claims.usr)
    request[CLAIMS] = claims
    return await handler(request)
