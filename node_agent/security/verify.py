"""The agent's only door: every request but ``/healthz`` carries a command token.

Routes are registered with :func:`serves` from their row of the node API table
(``shared/node_endpoints.py``); the middleware verifies the token against the exact request
(method and path with query before a byte of the body is read, then the body) and then
checks that the token's ``act`` and ``sub`` are the row's. A refused token is one log line
with the reason (never the token) and a 401 in the common error shape.

A row whose body is ``stream`` (uploads) is verified without reading its body: its token
must carry the hash of the *empty* body, and the route itself bounds the body by a size that
the token binds through the query string.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

import structlog
from aiohttp import web

from node_agent.keys import CLAIMS, METRICS, SETTINGS, VERIFIER
from node_agent.metrics import CONTAINER_OPERATIONS, refusal_reason, timed_operation
from shared.errors import PayloadTooLarge, Unauthenticated
from shared.logging import bind_log_context
from shared.node_endpoints import NODE_API, NodeEndpoint
from shared.protocol import CommandRejected
from shared.refusals import CLOCK_REFUSALS, NODE_TIME_HEADER, categorise, detail

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
H = TypeVar("H", bound=Handler)
log = structlog.get_logger("agent.auth")
PUBLIC_PATHS = frozenset({"/healthz"})
_ATTR = "__stellar_command__"
# Set on a request whose answer may tell the agent's time (its command was signed by a
# trusted key: accepted, or refused for its time only).
_TELL_TIME: Final = web.RequestKey("tell_time", bool)


def serves(routes: web.RouteTableDef, endpoint: NodeEndpoint[Any, Any]) -> Callable[[H], H]:
    """Register the handler as the route of ``endpoint``: the method and path of its row, and
    the ``act`` and ``sub`` every token for it must carry."""

    def register(handler: H) -> H:
        setattr(handler, _ATTR, endpoint)
        routes.route(endpoint.method, endpoint.path)(handler)
        return handler

    return register


def endpoint_of(handler: object) -> NodeEndpoint[Any, Any] | None:
    """The row a handler was registered for (None: a route outside the table)."""
    found = getattr(handler, _ATTR, None)
    return found if isinstance(found, NodeEndpoint) else None


def _reject(request: web.Request, reason: str) -> Unauthenticated:
    log.warning("command rejected", reason=reason)
    request.app[METRICS].token_refusals.labels(refusal_reason(reason)).inc()
    refusal = categorise(reason)
    if refusal in CLOCK_REFUSALS:
        request[_TELL_TIME] = True
    return Unauthenticated("command token rejected", details=[detail(refusal)])


async def tell_time(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: the agent's time on the answer to a signed command (taken as the
    headers leave, so the control plane can halve the round trip around it)."""
    if request.get(_TELL_TIME):
        response.headers[NODE_TIME_HEADER] = f"{time.time():.3f}"


async def _body(request: web.Request, route_spec: NodeEndpoint[Any, Any] | None) -> bytes:
    """The body, up to the row's own limit (else the agent's ``max_body_bytes``): the app's
    ``client_max_size`` is the largest any row takes (``largest_body``)."""
    limit = request.app[SETTINGS].max_body_bytes
    if route_spec is not None and route_spec.max_body is not None:
        limit = route_spec.max_body
    if (request.content_length or 0) > limit:
        raise PayloadTooLarge("request body too large")
    body = await request.read()
    if len(body) > limit:
        raise PayloadTooLarge("request body too large")
    return body


def largest_body(max_body_bytes: int) -> int:
    """The most any request may bring: ``max_body_bytes``, or a row's own larger limit."""
    return max([max_body_bytes, *(row.max_body or 0 for row in NODE_API)])


@web.middleware
async def require_command(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path in PUBLIC_PATHS and request.method in {"GET", "HEAD"}:
        return await handler(request)
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise _reject(request, "no bearer token")
    match = request.match_info
    route_spec = endpoint_of(match.handler) if match.http_exception is None else None
    verifier = request.app[VERIFIER]
    try:
        # Before a byte of the body is read: a request without a token of ours for this
        # method and path is refused at once, whatever body it announces.
        pending = verifier.verify_request(
            token.strip(), method=request.method, path=request.raw_path
        )
    except CommandRejected as err:
        raise _reject(request, err.reason) from err
    # A streamed route's body is not read here (nor hashed): its token signs the empty body.
    streamed = route_spec is not None and route_spec.body == "stream"
    body = b"" if streamed or not request.body_exists else await _body(request, route_spec)
    try:
        claims = verifier.verify_body(pending, body)
    except CommandRejected as err:
        raise _reject(request, err.reason) from err
    if match.http_exception is not None:
        return await handler(request)
    if route_spec is None:
        raise _reject(request, "route takes no commands")
    if claims.act != route_spec.action:
        raise _reject(request, "wrong act")
    expected_sub = (
        "node" if route_spec.subject == "node" else f"server:{match.get('server_id', '')}"
    )
    if claims.sub != expected_sub:
        raise _reject(request, "wrong sub")
    bind_log_context(jti=claims.jti, act=claims.act, usr=claims.usr)
    request[CLAIMS] = claims
    request[_TELL_TIME] = True
    if claims.act in CONTAINER_OPERATIONS:
        return await timed_operation(request.app[METRICS], claims.act, handler, request)
    return await handler(request)
