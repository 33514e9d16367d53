"""How the control plane talks to node agents: each request signed for exactly itself, sent
to the node's pinned address, its failures turned into the API's errors.

:class:`NodeTransport` sends one request for one row of the node API table
(``shared/node_endpoints.py``); ``control_plane/nodes/client.py`` gives each row its typed
method. Nothing here knows a path or an action but through a row.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, Final, TypeVar

import aiohttp
import structlog
from pydantic import BaseModel, ValidationError
from yarl import URL

from control_plane.db.models import Node
from control_plane.db.session import in_transaction
from control_plane.nodes import clock
from control_plane.nodes.tls import mismatch_error, node_ssl
from control_plane.observability.metrics import ControlPlaneMetrics
from control_plane.security.command_signing import CommandSigner
from shared.errors import (
    ApiError,
    Conflict,
    ErrorBody,
    ErrorResponse,
    Forbidden,
    InsufficientStorage,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    RequestTimeout,
    UpstreamFailed,
    UpstreamNoAnswer,
    UpstreamUnavailable,
)
from shared.node_endpoints import NoBody, NodeEndpoint
from shared.protocol import MAX_HTU_LENGTH
from shared.refusals import Refusal
from shared.refusals import read as read_refusal

log = structlog.get_logger("nodes.client")
In = TypeVar("In", bound=BaseModel)
Out = TypeVar("Out", bound=BaseModel)
# The node refused what the user asked for (a symlink in the way, no such file, a full
# volume…): the user gets the same status and the node's message. Any other answer is the
# node's failure, 502: 401 (it refused our command token: control_plane/nodes/clock.py says
# why, a clock off included), 405 or 415 (it speaks another version of the node API), 5xx.
_PASSED_ON: dict[int, type[ApiError]] = {
    error.status: error
    for error in (
        InvalidRequest,
        Forbidden,
        NotFound,
        RequestTimeout,
        Conflict,
        PayloadTooLarge,
        RateLimited,
        InsufficientStorage,
    )
}
_PASSED_HEADERS = ("Retry-After",)
# An error body is a few hundred bytes; a node that sends more is not believed.
_MAX_ERROR_BYTES = 64 * 1024
# The longest JSON answer read from a node (a listing of the agent's default 10,000 entries,
# each at the longest path and link target, stays under it): a longer one is the node's
# failure, never read into memory whole (a compromised node would send gigabytes).
MAX_NODE_ANSWER_BYTES: Final = 64 * 1024 * 1024


def _target(node: Node, path: str, query: Mapping[str, str] | None) -> URL:
    """The URL of one request to ``node``; 400 if its target cannot fit a command token."""
    url = URL(node.url.rstrip("/") + path, encoded=False)
    if query:
        url = url.with_query(query)
    if len(url.raw_path_qs) > MAX_HTU_LENGTH:
        raise InvalidRequest(f"the request to the node would be over {MAX_HTU_LENGTH} characters")
    return url


async def _bounded_body(response: aiohttp.ClientResponse) -> bytes:
    """The answer's body, or b"" if it is larger than an error body can be."""
    body = bytearray()
    async for chunk in response.content.iter_any():
        body += chunk
        if len(body) > _MAX_ERROR_BYTES:
            return b""
    return bytes(body)


async def _answer_body(node: Node, response: aiohttp.ClientResponse) -> bytes:
    """A successful answer's body, read up to :data:`MAX_NODE_ANSWER_BYTES`; longer is the
    node's failure (502), and the rest is not read."""
    if (response.content_length or 0) > MAX_NODE_ANSWER_BYTES:
        raise UpstreamFailed(f"node {node.name!r} sent a longer answer than we read")
    body = bytearray()
    async for chunk in response.content.iter_any():
        body += chunk
        if len(body) > MAX_NODE_ANSWER_BYTES:
            raise UpstreamFailed(f"node {node.name!r} sent a longer answer than we read")
    return bytes(body)


def _error_body(raw: bytes) -> ErrorBody | None:
    """The node's answer in the one error shape, or None if it is not that."""
    try:
        return ErrorResponse.model_validate_json(raw).error
    except ValidationError:
        return None


class NodeRedirected(aiohttp.ClientError):
    """A node answered with a redirect (raised by :func:`refuse_redirects`)."""


async def refuse_redirects(
    request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
) -> aiohttp.ClientResponse:
    """A client middleware: a redirect from a node is never followed. Whoever holds a node
    (root on a game host is enough) would point the control plane at anything in its own
    network, a cloud's metadata service or an internal WebSocket included, and have the
    answer passed back to them as a file or a console. aiohttp follows redirects per
    request unless told not to; a WebSocket handshake cannot be told, so this refuses them
    for every request of the session."""
    response = await handler(request)
    if 300 <= response.status < 400:
        response.release()
        raise NodeRedirected(f"answered {response.status} (a redirect, not followed)")
    return response


def node_session() -> aiohttp.ClientSession:
    """The HTTP client session for calls to nodes: :func:`refuse_redirects` on every one."""
    return aiohttp.ClientSession(middlewares=(refuse_redirects,))


class NodeUnreachable(UpstreamUnavailable):
    """No connection to the node: refused, no route, a name that does not resolve, or (a
    socket's handshake) no answer in time. Not a TLS failure nor a node's answer."""


# Connected, but TLS failed (a certificate or a handshake): the node is there.
_TLS_FAILED = (aiohttp.ClientConnectorCertificateError, aiohttp.ClientConnectorSSLError)


class NodeNotConfigured(UpstreamUnavailable):
    """The control plane has no command-signing key, so it cannot command nodes."""


class NodeCallInTransaction(RuntimeError):
    """A node was about to be called while a database transaction is open (a bug)."""


def _outside_transactions(node: Node) -> None:
    if in_transaction():
        raise NodeCallInTransaction(
            f"a call to node {node.name!r} inside a database transaction: read, call, then write"
        )


def _query(model: BaseModel | None) -> dict[str, str] | None:
    """A query model as the query string's names and values."""
    if model is None:
        return None
    return {name: str(value) for name, value in model.model_dump(exclude_none=True).items()}


def _json_body(body: BaseModel) -> bytes:
    """A request model as the exact bytes that are signed and sent."""
    return body.model_dump_json(exclude_unset=False).encode()


class NodeTransport:
    """Signed HTTP calls to agents over one shared ``aiohttp.ClientSession``."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        signer: CommandSigner | None,
        *,
        timeout: float,
        allow_plain_http: bool = True,
        metrics: ControlPlaneMetrics | None = None,
    ) -> None:
        """``allow_plain_http=False`` (production): only loopback agents may skip TLS;
        ``metrics``: where each call is counted and timed."""
        self._allow_plain_http = allow_plain_http
        self._metrics = metrics
        self._session = session
        self._signer = signer
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._stream_timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=timeout, sock_read=timeout * 6
        )
        self._ws_timeout = aiohttp.ClientWSTimeout(ws_close=timeout)
        self._first_byte_seconds = timeout
        self.clock = clock.ClockReadings()

    def _ssl(self, node: Node) -> aiohttp.Fingerprint | bool:
        """https agents only with their pinned certificate; plain http as the settings allow."""
        return node_ssl(
            node.name, node.url, node.tls_fingerprint, allow_plain_http=self._allow_plain_http
        )

    def _signed(
        self,
        node: Node,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None,
        action: str,
        subject: str,
        user: str,
        signed_body: bytes,
    ) -> tuple[URL, dict[str, str]]:
        """The exact URL to send and its Authorization header for one request."""
        if self._signer is None:
            raise NodeNotConfigured(
                "the control plane has no command-signing key (STELLAR_SIGNING_KEY_FILE)"
            )
        url = _target(node, path, query)
        token = self._signer.sign(
            node_id=node.id,
            subject=subject,
            action=action,
            method=method,
            path=url.raw_path_qs,
            body=signed_body,
            user=user,
        )
        return url, {"Authorization": f"Bearer {token}"}

    @asynccontextmanager
    async def _exchange(
        self,
        node: Node,
        method: str,
        url: URL,
        *,
        action: str,
        streaming: bool = False,
        **kwargs: Any,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """One request, with every way it can fail turned into the API's errors, counted
        and timed under the node's name and the row's ``action``.

        ``streaming``: no limit on the whole exchange (a big file takes its time), only on
        connecting and on each read.
        """
        started = time.perf_counter()
        outcome = "error"
        try:
            async with self._raw_exchange(node, method, url, streaming=streaming, **kwargs) as r:
                outcome = "ok"
                yield r
        except UpstreamFailed:
            outcome = "failed"
            raise
        except UpstreamUnavailable:
            outcome = "unreachable"
            raise
        except ApiError:
            outcome = "refused"
            raise
        finally:
            if self._metrics is not None:
                self._metrics.node_calls.labels(node.name, action, outcome).inc()
                self._metrics.node_call_seconds.labels(node.name, action).observe(
                    time.perf_counter() - started
                )

    @asynccontextmanager
    async def _raw_exchange(
        self, node: Node, method: str, url: URL, *, streaming: bool, **kwargs: Any
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        _outside_transactions(node)
        timeout = self._stream_timeout if streaming else self._timeout
        try:
            async with contextlib.AsyncExitStack() as stack:
                sent_at = time.time()
                # A stream's body may take its time; its answer may not (a frozen node would
                # otherwise hold the client for the whole read timeout before a first byte).
                async with asyncio.timeout(self._first_byte_seconds):
                    # Never followed (refuse_redirects), also on a session made elsewhere.
                    response = await stack.enter_async_context(
                        self._session.request(
                            method,
                            url,
                            ssl=self._ssl(node),
                            timeout=timeout,
                            allow_redirects=False,
                            **kwargs,
                        )
                    )
                offset = clock.measure(response.headers, sent_at=sent_at, received_at=time.time())
                self.clock.record(node.id, offset)
                if response.status >= 300:
                    await self._raise_for(node, response, offset)
                yield response
        except aiohttp.ServerFingerprintMismatch as err:
            raise mismatch_error(node.name, err) from err
        except NodeRedirected as err:
            raise UpstreamFailed(f"node {node.name!r} {err}") from err
        except TimeoutError as err:
            raise UpstreamNoAnswer(f"node {node.name!r} did not answer in time") from err
        except _TLS_FAILED as err:
            # Never connected: the node did not get the request.
            raise UpstreamUnavailable(f"node {node.name!r} cannot be reached: {err}") from err
        except aiohttp.ClientConnectorError as err:
            raise NodeUnreachable(f"node {node.name!r} cannot be reached: {err}") from err
        except aiohttp.ClientError as err:
            raise UpstreamNoAnswer(f"node {node.name!r} cannot be reached: {err}") from err

    async def _raise_for(
        self, node: Node, response: aiohttp.ClientResponse, offset: float | None
    ) -> None:
        """The API's error for the node's error answer (``offset``: the clock offset this
        answer told, if it did)."""
        status = response.status
        error = _error_body(await _bounded_body(response))
        if status == 401:
            refusal = read_refusal(error.details) if error is not None else None
            kid = self._signer.kid if self._signer else "?"
            failure = clock.refused(node.name, refusal, kid, offset)
            log.warning("node refused our command", node=node.name, refusal=refusal)
            raise failure
        message = error.message if error is not None else None
        log.warning("node error", node=node.name, status=status, message=message)
        passed_on = _PASSED_ON.get(status)
        if passed_on is None:
            raise UpstreamFailed(f"node {node.name!r} answered {status}: {message or 'error'}")
        raise passed_on(
            message or "the node refused the request",
            details=error.details if error is not None else None,
            headers={
                name: response.headers[name] for name in _PASSED_HEADERS if name in response.headers
            },
        )

    def _request(
        self,
        endpoint: NodeEndpoint[Any, Any],
        node: Node,
        *,
        user: str,
        server_id: uuid.UUID | None,
        backup_id: uuid.UUID | None,
        query: BaseModel | None,
        signed_body: bytes,
    ) -> tuple[URL, dict[str, str]]:
        ids = {"server_id": server_id, "backup_id": backup_id}
        path = endpoint.url_path(**{k: v for k, v in ids.items() if v is not None})
        if endpoint.query is not None and not isinstance(query, endpoint.query):
            raise TypeError(f"{endpoint.action} takes a {endpoint.query.__name__} query")
        return self._signed(
            node,
            endpoint.method,
            path,
            query=_query(query),
            action=endpoint.action,
            subject=endpoint.subject_of(server_id),
            user=user,
            signed_body=signed_body,
        )

    def _answer(self, endpoint: NodeEndpoint[Any, Out], node: Node, raw: bytes) -> Out:
        if endpoint.answer != "json":
            return endpoint.response()
        try:
            return endpoint.response.model_validate_json(raw)
        except ValidationError as err:
            raise UpstreamFailed(
                f"node {node.name!r} answered {endpoint.action} with something else than "
                f"its {endpoint.response.__name__}"
            ) from err

    async def send(
        self,
        endpoint: NodeEndpoint[In, Out],
        node: Node,
        body: In,
        *,
        user: str,
        server_id: uuid.UUID | None = None,
        backup_id: uuid.UUID | None = None,
        query: BaseModel | None = None,
        raw: bytes | None = None,
    ) -> Out:
        """One signed request of ``endpoint`` (its JSON ``body``, or ``raw`` bytes for a row
        whose body is raw); the node's answer as the row's response model."""
        if endpoint.body == "raw":
            if raw is None:
                raise TypeError(f"{endpoint.action} sends raw bytes")
            content, content_type = raw, "application/octet-stream"
        elif endpoint.body == "json":
            content, content_type = _json_body(body), "application/json"
        else:
            content, content_type = b"", ""
        url, headers = self._request(
            endpoint,
            node,
            user=user,
            server_id=server_id,
            backup_id=backup_id,
            query=query,
            signed_body=content,
        )
        if content_type:
            headers["Content-Type"] = content_type
        async with self._exchange(
            node,
            endpoint.method,
            url,
            action=endpoint.action,
            data=content or None,
            headers=headers,
        ) as answer:
            raw = await _answer_body(node, answer)
        return self._answer(endpoint, node, raw)

    @asynccontextmanager
    async def fetch(
        self,
        endpoint: NodeEndpoint[NoBody, NoBody],
        node: Node,
        *,
        user: str,
        server_id: uuid.UUID | None = None,
        backup_id: uuid.UUID | None = None,
        query: BaseModel | None = None,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """A signed request of a row that answers with bytes, which the caller streams on."""
        url, headers = self._request(
            endpoint,
            node,
            user=user,
            server_id=server_id,
            backup_id=backup_id,
            query=query,
            signed_body=b"",
        )
        async with self._exchange(
            node, endpoint.method, url, action=endpoint.action, streaming=True, headers=headers
        ) as response:
            yield response

    async def stream_up(
        self,
        endpoint: NodeEndpoint[NoBody, Out],
        node: Node,
        chunks: AsyncIterable[bytes],
        *,
        user: str,
        server_id: uuid.UUID,
        query: BaseModel,
    ) -> Out:
        """A signed request of a row whose body streams; the token binds the query, which
        carries the size, and signs the empty body."""
        url, headers = self._request(
            endpoint,
            node,
            user=user,
            server_id=server_id,
            backup_id=None,
            query=query,
            signed_body=b"",
        )
        headers["Content-Type"] = "application/octet-stream"
        async with self._exchange(
            node,
            endpoint.method,
            url,
            action=endpoint.action,
            streaming=True,
            data=chunks,
            headers=headers,
        ) as answer:
            raw = await _answer_body(node, answer)
        return self._answer(endpoint, node, raw)

    def socket_token(
        self,
        endpoint: NodeEndpoint[NoBody, NoBody],
        node: Node,
        *,
        user: str,
        server_id: uuid.UUID | None = None,
        query: BaseModel | None = None,
    ) -> str:
        """A command token for a WebSocket row: opens the socket, or renews an open one (the
        same ``query``: a token signs the path with its query)."""
        _url, headers = self._socket(endpoint, node, user=user, server_id=server_id, query=query)
        return headers["Authorization"].removeprefix("Bearer ")

    def _socket(
        self,
        endpoint: NodeEndpoint[NoBody, NoBody],
        node: Node,
        *,
        user: str,
        server_id: uuid.UUID | None,
        query: BaseModel | None = None,
    ) -> tuple[URL, dict[str, str]]:
        if endpoint.answer != "websocket":
            raise TypeError(f"{endpoint.action} is not a WebSocket")
        return self._request(
            endpoint,
            node,
            user=user,
            server_id=server_id,
            backup_id=None,
            query=query,
            signed_body=b"",
        )

    async def open_websocket(
        self,
        endpoint: NodeEndpoint[NoBody, NoBody],
        node: Node,
        *,
        user: str,
        server_id: uuid.UUID | None = None,
        query: BaseModel | None = None,
    ) -> aiohttp.ClientWebSocketResponse:
        """Connect to a WebSocket row of the agent with a command token for it."""
        _outside_transactions(node)
        url, headers = self._socket(endpoint, node, user=user, server_id=server_id, query=query)
        ssl = self._ssl(node)
        sent_at = time.time()
        try:
            # The handshake is bounded like any call (the session's default is 5 minutes).
            async with asyncio.timeout(self._first_byte_seconds):
                return await self._session.ws_connect(
                    url,
                    ssl=ssl,
                    headers=headers,
                    timeout=self._ws_timeout,
                    heartbeat=30,
                )
        except aiohttp.ServerFingerprintMismatch as err:
            raise mismatch_error(node.name, err) from err
        except NodeRedirected as err:
            raise UpstreamFailed(f"node {node.name!r} {err}") from err
        except aiohttp.WSServerHandshakeError as err:
            # The body of a refused handshake is not read; the agent's time is told on a 401
            # only when it refused the token for its time.
            offset = clock.measure(err.headers or {}, sent_at=sent_at, received_at=time.time())
            if err.status == 401 and offset is not None:
                self.clock.record(node.id, offset)
                refusal = Refusal.EXPIRED if offset > 0 else Refusal.NOT_YET_VALID
                raise clock.skewed(node.name, refusal, offset) from err
            raise UpstreamFailed(
                f"node {node.name!r} refused the connection ({err.status})"
            ) from err
        except TimeoutError as err:
            raise NodeUnreachable(f"node {node.name!r} did not answer in time") from err
        except _TLS_FAILED as err:
            raise UpstreamUnavailable(f"node {node.name!r} cannot be reached: {err}") from err
        except aiohttp.ClientConnectorError as err:
            raise NodeUnreachable(f"node {node.name!r} cannot be reached: {err}") from err
        except aiohttp.ClientError as err:
            raise UpstreamUnavailable(f"node {node.name!r} cannot be reached: {err}") from err
