"""The one place that talks to node agents: signs each request and maps failures to clear errors."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import structlog
from pydantic import ValidationError
from yarl import URL

from control_plane.db.models import Node
from control_plane.nodes.tls import mismatch_error, node_ssl
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
    UpstreamUnavailable,
)
from shared.node_api import SystemInfo
from shared.protocol import MAX_HTU_LENGTH
from shared.server_spec import ServerSpec

log = structlog.get_logger("nodes.client")
# The node refused what the user asked for (a symlink in the way, no such file, a full
# volume…): the user gets the same status and the node's message. Any other answer is the
# node's failure, 502: 401 (it refused our command token), 405 or 415 (it speaks another
# version of the node API), 5xx.
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


def _error_body(raw: bytes) -> ErrorBody | None:
    """The node's answer in the one error shape, or None if it is not that."""
    try:
        return ErrorResponse.model_validate_json(raw).error
    except ValidationError:
        return None


class NodeNotConfigured(UpstreamUnavailable):
    """The control plane has no command-signing key, so it cannot command nodes."""


class NodeClient:
    """Signed HTTP calls to agents over one shared ``aiohttp.ClientSession``."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        signer: CommandSigner | None,
        *,
        timeout: float,
        allow_plain_http: bool = True,
    ) -> None:
        """``allow_plain_http=False`` (production): only loopback agents may skip TLS."""
        self._allow_plain_http = allow_plain_http
        self._session = session
        self._signer = signer
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._stream_timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=timeout, sock_read=timeout * 6
        )
        self._ws_timeout = aiohttp.ClientWSTimeout(ws_close=timeout)

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
        self, node: Node, method: str, url: URL, *, streaming: bool = False, **kwargs: Any
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """One request, with every way it can fail turned into the API's errors.

        ``streaming``: no limit on the whole exchange (a big file takes its time), only on
        connecting and on each read.
        """
        timeout = self._stream_timeout if streaming else self._timeout
        try:
            async with self._session.request(
                method, url, ssl=self._ssl(node), timeout=timeout, **kwargs
            ) as response:
                if response.status >= 400:
                    await self._raise_for(node, response)
                yield response
        except aiohttp.ServerFingerprintMismatch as err:
            raise mismatch_error(node.name, err) from err
        except TimeoutError as err:
            raise UpstreamUnavailable(f"node {node.name!r} did not answer in time") from err
        except aiohttp.ClientError as err:
            raise UpstreamUnavailable(f"node {node.name!r} cannot be reached: {err}") from err

    async def _raise_for(self, node: Node, response: aiohttp.ClientResponse) -> None:
        status = response.status
        if status == 401:
            kid = self._signer.kid if self._signer else "?"
            raise UpstreamFailed(
                f"node {node.name!r} refused our command: does its config trust key {kid}?"
            )
        error = _error_body(await _bounded_body(response))
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

    async def call(
        self,
        node: Node,
        method: str,
        path: str,
        *,
        action: str,
        subject: str = "node",
        user: str = "system",
        payload: Any = None,
        raw: bytes | None = None,
        query: Mapping[str, str] | None = None,
    ) -> Any:
        """Send one signed request (JSON ``payload`` or ``raw`` bytes); return the JSON answer."""
        if raw is not None:
            body, content_type = raw, "application/octet-stream"
        elif payload is not None:
            body = json.dumps(payload, separators=(",", ":")).encode()
            content_type = "application/json"
        else:
            body, content_type = b"", ""
        url, headers = self._signed(
            node,
            method,
            path,
            query=query,
            action=action,
            subject=subject,
            user=user,
            signed_body=body,
        )
        if content_type:
            headers["Content-Type"] = content_type
        async with self._exchange(node, method, url, data=body or None, headers=headers) as answer:
            text = await answer.text()
        try:
            return json.loads(text) if text else None
        except json.JSONDecodeError as err:
            raise UpstreamFailed(
                f"node {node.name!r} answered with something that is not JSON"
            ) from err

    @asynccontextmanager
    async def download(
        self,
        node: Node,
        path: str,
        *,
        query: Mapping[str, str],
        action: str,
        subject: str,
        user: str,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """A signed GET whose (large) answer the caller streams on."""
        url, headers = self._signed(
            node,
            "GET",
            path,
            query=query,
            action=action,
            subject=subject,
            user=user,
            signed_body=b"",
        )
        async with self._exchange(node, "GET", url, streaming=True, headers=headers) as response:
            yield response

    async def upload(
        self,
        node: Node,
        path: str,
        body: AsyncIterable[bytes],
        *,
        query: Mapping[str, str],
        action: str,
        subject: str,
        user: str,
    ) -> Any:
        """A signed PUT streaming ``body``; the token binds the query, which carries the size."""
        url, headers = self._signed(
            node,
            "PUT",
            path,
            query=query,
            action=action,
            subject=subject,
            user=user,
            signed_body=b"",
        )
        headers["Content-Type"] = "application/octet-stream"
        async with self._exchange(
            node, "PUT", url, streaming=True, data=body, headers=headers
        ) as answer:
            text = await answer.text()
        return json.loads(text) if text else None

    async def system_info(self, node: Node, *, user: str = "system") -> SystemInfo:
        data = await self.call(node, "GET", "/api/v1/system", action="node.system", user=user)
        return SystemInfo.model_validate(data)

    # --- servers ----------------------------------------------------------------------

    async def create_server(self, node: Node, spec: ServerSpec, *, user: str) -> Any:
        return await self.call(
            node,
            "PUT",
            f"/api/v1/servers/{spec.uuid}",
            action="server.create",
            subject=f"server:{spec.uuid}",
            user=user,
            payload=spec.model_dump(mode="json"),
        )

    async def server_call(
        self,
        node: Node,
        server_id: uuid.UUID,
        method: str,
        suffix: str,
        *,
        action: str,
        user: str,
        payload: Any = None,
    ) -> Any:
        """A signed call on one server's agent route (``/api/v1/servers/<id><suffix>``)."""
        return await self.call(
            node,
            method,
            f"/api/v1/servers/{server_id}{suffix}",
            action=action,
            subject=f"server:{server_id}",
            user=user,
            payload=payload,
        )

    def socket_token(self, node: Node, path: str, *, action: str, subject: str, user: str) -> str:
        """A command token for ``GET path``: opens an agent WebSocket, or renews an open one."""
        if self._signer is None:
            raise NodeNotConfigured(
                "the control plane has no command-signing key (STELLAR_SIGNING_KEY_FILE)"
            )
        url = _target(node, path, None)
        return self._signer.sign(
            node_id=node.id,
            subject=subject,
            action=action,
            method="GET",
            path=url.raw_path_qs,
            body=b"",
            user=user,
        )

    async def open_websocket(
        self, node: Node, path: str, *, action: str, subject: str, user: str
    ) -> aiohttp.ClientWebSocketResponse:
        """Connect to an agent WebSocket route with a command token for ``GET path``."""
        token = self.socket_token(node, path, action=action, subject=subject, user=user)
        url = URL(node.url.rstrip("/") + path, encoded=False)
        ssl = self._ssl(node)
        try:
            return await self._session.ws_connect(
                url,
                ssl=ssl,
                headers={"Authorization": f"Bearer {token}"},
                timeout=self._ws_timeout,
                heartbeat=30,
            )
        except aiohttp.ServerFingerprintMismatch as err:
            raise mismatch_error(node.name, err) from err
        except aiohttp.WSServerHandshakeError as err:
            raise UpstreamFailed(
                f"node {node.name!r} refused the connection ({err.status})"
            ) from err
        except (aiohttp.ClientError, TimeoutError) as err:
            raise UpstreamUnavailable(f"node {node.name!r} cannot be reached: {err}") from err
