"""The one place that talks to node agents: signs each request and maps failures to clear errors."""

from __future__ import annotations

import json
import uuid
from typing import Any

import aiohttp
import structlog
from yarl import URL

from control_plane.db.models import Node
from control_plane.security.command_signing import CommandSigner
from shared.errors import (
    ApiError,
    Conflict,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    UpstreamFailed,
    UpstreamUnavailable,
)
from shared.node_api import SystemInfo
from shared.server_spec import ServerSpec

log = structlog.get_logger("nodes.client")
_PASSED_ON: dict[int, type[ApiError]] = {
    400: InvalidRequest,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    429: RateLimited,
}


class NodeNotConfigured(UpstreamUnavailable):
    """The control plane has no command-signing key, so it cannot command nodes."""


class NodeClient:
    """Signed HTTP calls to agents over one shared ``aiohttp.ClientSession``."""

    def __init__(
        self, session: aiohttp.ClientSession, signer: CommandSigner | None, *, timeout: float
    ) -> None:
        self._session = session
        self._signer = signer
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._ws_timeout = aiohttp.ClientWSTimeout(ws_close=timeout)

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
    ) -> Any:
        """Send one signed request; return the decoded JSON answer."""
        if self._signer is None:
            raise NodeNotConfigured(
                "the control plane has no command-signing key (STELLAR_SIGNING_KEY_FILE)"
            )
        body = b"" if payload is None else json.dumps(payload, separators=(",", ":")).encode()
        url = URL(node.url.rstrip("/") + path, encoded=False)
        token = self._signer.sign(
            node_id=node.id,
            subject=subject,
            action=action,
            method=method,
            path=url.raw_path_qs,
            body=body,
            user=user,
        )
        headers = {"Authorization": f"Bearer {token}"}
        if body:
            headers["Content-Type"] = "application/json"
        try:
            async with self._session.request(
                method, url, data=body or None, headers=headers, timeout=self._timeout
            ) as response:
                text = await response.text()
                status = response.status
        except TimeoutError as err:
            raise UpstreamUnavailable(f"node {node.name!r} did not answer in time") from err
        except aiohttp.ClientError as err:
            raise UpstreamUnavailable(f"node {node.name!r} cannot be reached: {err}") from err
        if status == 401:
            raise UpstreamFailed(
                f"node {node.name!r} refused our command: "
                f"does its config trust key {self._signer.kid}?"
            )
        try:
            data = json.loads(text) if text else None
        except json.JSONDecodeError as err:
            raise UpstreamFailed(
                f"node {node.name!r} answered with something that is not JSON"
            ) from err
        if status >= 400:
            message = data.get("error", {}).get("message") if isinstance(data, dict) else None
            log.warning("node error", node=node.name, status=status, message=message)
            # What the user asked for was refused by the node: pass that on as such.
            passed_on = _PASSED_ON.get(status)
            if passed_on is not None:
                raise passed_on(f"node {node.name!r}: {message or 'refused'}")
            raise UpstreamFailed(f"node {node.name!r} answered {status}: {message or 'error'}")
        return data

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
        url = URL(node.url.rstrip("/") + path, encoded=False)
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
        try:
            return await self._session.ws_connect(
                url,
                headers={"Authorization": f"Bearer {token}"},
                timeout=self._ws_timeout,
                heartbeat=30,
            )
        except aiohttp.WSServerHandshakeError as err:
            raise UpstreamFailed(
                f"node {node.name!r} refused the connection ({err.status})"
            ) from err
        except (aiohttp.ClientError, TimeoutError) as err:
            raise UpstreamUnavailable(f"node {node.name!r} cannot be reached: {err}") from err
