"""Helpers for the file-API tests: a signed client for ``/files`` routes, and running games
whose container plants traps in their own volume.

:class:`FilesClient` signs each request as the control plane would: the query string is part
of the signed path, and a streamed upload signs the empty body with its ``size`` in the query.
:func:`in_game` runs a shell command inside the game's container as its user (uid 1000), so
the traps (symlinks to host paths, swapped directories) are made by the game itself.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp

from node_agent.docker.hardening import game_container_name
from shared.protocol import mint
from tests.integration.node_agent.live_agent import (
    LiveClient,
)
from tests.support.containers import Answer


def files_path(server_id: uuid.UUID, route: str, **query: str | int) -> str:
    """``/api/v1/servers/<id>/files/<route>?...`` with the query percent-encoded."""
    path = f"/api/v1/servers/{server_id}/files/{route}"
    if query:
        path += "?" + "&".join(f"{k}={quote(str(v), safe='/')}" for k, v in query.items())
    return path


@dataclass
class FilesClient(LiveClient):
    """The signed client plus the file routes."""

    def sign(self, server_id: uuid.UUID, action: str, method: str, path: str, body: bytes) -> str:
        return mint(
            private_key=self.key.private_key,
            kid=self.key.kid,
            issuer=self.agent.expected_issuer,
            node_id=self.agent.node_id,
            subject=f"server:{server_id}",
            action=action,
            method=method,
            path=path,
            body=body,
            user="test-user",
        )

    async def call(
        self,
        method: str,
        server_id: uuid.UUID,
        action: str,
        route: str,
        *,
        body: bytes = b"",
        json_body: Any = None,
        **query: str | int,
    ) -> Answer:
        """One signed request to a file route; the answer's body as JSON (or bytes)."""
        path = files_path(server_id, route, **query)
        data = self.encode(json_body) if json_body is not None else body
        headers = {"Authorization": f"Bearer {self.sign(server_id, action, method, path, data)}"}
        url = self.agent.base_url + path
        async with self.http.request(method, url, data=data, headers=headers) as response:
            raw = await response.read()
            if response.content_type == "application/json" and raw:
                return Answer(response.status, await response.json())
            return Answer(response.status, raw)

    async def listing(self, server_id: uuid.UUID, path: str = "/") -> Answer:
        return await self.call("GET", server_id, "files.list", "list", path=path)

    async def read_file(self, server_id: uuid.UUID, path: str) -> Answer:
        return await self.call("GET", server_id, "files.read", "contents", path=path)

    async def write_file(self, server_id: uuid.UUID, path: str, data: bytes) -> Answer:
        return await self.call("PUT", server_id, "files.write", "contents", body=data, path=path)

    async def post(self, server_id: uuid.UUID, route: str, body: dict[str, Any]) -> Answer:
        return await self.call("POST", server_id, f"files.{_ACTIONS[route]}", route, json_body=body)

    async def upload(
        self,
        server_id: uuid.UUID,
        path: str,
        size: int,
        chunks: AsyncIterator[bytes],
        session: aiohttp.ClientSession | None = None,
    ) -> Answer:
        """A streamed upload: the token signs the empty body and ``size`` in the query."""
        signed = files_path(server_id, "upload", path=path, size=size)
        token = self.sign(server_id, "files.upload", "PUT", signed, b"")
        http = session or self.http
        async with http.put(
            self.agent.base_url + signed,
            data=chunks,
            headers={"Authorization": f"Bearer {token}"},
        ) as response:
            return Answer(response.status, await response.json())


_ACTIONS = {
    "directory": "mkdir",
    "rename": "rename",
    "copy": "copy",
    "delete": "delete",
    "chmod": "chmod",
    "compress": "compress",
    "decompress": "decompress",
    "pull": "pull",
}


def in_game(server_id: uuid.UUID, script: str, *, detach: bool = False) -> str:
    """Run ``sh -c script`` inside the game's container as its own user (uid 1000)."""
    args = ["docker", "exec", *(["-d"] if detach else []), game_container_name(server_id)]
    result = subprocess.run(
        [*args, "sh", "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout
