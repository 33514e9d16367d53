"""Helpers for the tests of live server features: consoles, events, crashes, restarts, files.

:class:`LiveAgent` is an agent process whose config also carries ``[console]`` and ``[files]``
tables. :class:`LiveClient` adds WebSockets to the signed client: each is opened with a token
minted for ``GET`` of its path, as the control plane does. :class:`Frames` reads a socket in the
background so that tests can wait for the frame they expect. :class:`LiveServers` hands out
game servers and removes them after the test.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiodocker
import aiohttp

from node_agent.docker.hardening import SERVER_LABEL
from shared.protocol import mint
from tests.support.agent_process import AgentProcess, SigningKey
from tests.support.containers import (
    Answer,
    SignedAgentClient,
    remove_container,
)
from tests.support.factories import server_spec
from tests.support.scrape import Scrape

CONSOLE_LIMITS: dict[str, int | float] = {
    "lines_per_second": 50,
    "sockets_per_server": 3,
    "inbound_messages_per_second": 5,
    "inbound_message_bytes": 4096,
    "token_grace_seconds": 2,
}


# Low enough for the file tests to reach; the other tests do not come near them.
FILE_LIMITS: dict[str, int | float] = {
    "max_upload_bytes": 3 * 1024**3,
    "max_extract_bytes": 64 * 1024 * 1024,
    "max_extract_entries": 1000,
    "max_compression_ratio": 50,
}


@dataclass
class LiveAgent(AgentProcess):
    """An agent whose config sets console and file limits (``[console]`` and ``[files]``
    tables at the end)."""

    console: dict[str, int | float] = field(default_factory=lambda: dict(CONSOLE_LIMITS))
    files: dict[str, int | float] = field(default_factory=lambda: dict(FILE_LIMITS))

    def write_config(self) -> Path:
        path = super().write_config()
        with path.open("a", encoding="utf-8") as config:
            for table, values in (("console", self.console), ("files", self.files)):
                config.write(f"\n[{table}]\n")
                config.writelines(f"{name} = {value}\n" for name, value in values.items())
        return path

    @property
    def pid(self) -> int:
        process = self._process
        assert process is not None, "the agent is not running"
        return process.pid

    def _status_kib(self, name: str) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(f"{name}:"):
                return int(line.split()[1])
        raise AssertionError(f"no {name} in /proc/<pid>/status")

    def peak_rss_kib(self) -> int:
        """VmHWM of the agent process: the most memory it ever held, in KiB."""
        return self._status_kib("VmHWM")

    def rss_kib(self) -> int:
        """VmRSS of the agent process: the memory it holds now, in KiB."""
        return self._status_kib("VmRSS")

    def cpu_seconds(self) -> float:
        """The CPU time the agent process has used, its threads included (user + system)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def volume(self, server_id: uuid.UUID) -> Path:
        return self.data_dir / "volumes" / str(server_id)


def start_live_agent(root: Path, key: SigningKey, **settings: object) -> LiveAgent:
    """A started live agent; ``settings`` are added to its top-level settings."""
    agent = LiveAgent(root, {key.kid: key.public_text})
    agent.settings.update(settings)
    agent.start()
    return agent


@dataclass
class LiveClient(SignedAgentClient):
    """The signed client, plus stats, logs, commands and WebSockets."""

    def token(self, path: str, action: str, subject: str, lifetime: int = 60) -> str:
        return mint(
            private_key=self.key.private_key,
            kid=self.key.kid,
            issuer=self.agent.expected_issuer,
            node_id=self.agent.node_id,
            subject=subject,
            action=action,
            method="GET",
            path=path,
            body=b"",
            user="test-user",
            lifetime=lifetime,
        )

    async def metrics(self) -> Scrape:
        """The agent's Prometheus metrics, read with a signed ``node.metrics`` command."""
        path = "/api/v1/metrics"
        headers = {"Authorization": f"Bearer {self.token(path, 'node.metrics', 'node')}"}
        async with self.http.get(self.agent.base_url + path, headers=headers) as response:
            assert response.status == 200, await response.text()
            return Scrape.parse(await response.text())

    async def command(self, server_id: uuid.UUID, line: str) -> Answer:
        body = self.encode({"command": line})
        return await self.send("POST", server_id, "server.command", suffix="/command", body=body)

    async def logs(self, server_id: uuid.UUID, lines: int = 100) -> Answer:
        return await self.send("GET", server_id, "server.logs", suffix=f"/logs?lines={lines}")

    async def stats(self, server_id: uuid.UUID) -> Answer:
        return await self.send("GET", server_id, "server.stats", suffix="/stats")

    @asynccontextmanager
    async def socket(
        self, path: str, action: str, subject: str, lifetime: int = 60
    ) -> AsyncIterator[Frames]:
        token = self.token(path, action, subject, lifetime)
        ws = await self.http.ws_connect(
            self.agent.base_url + path, headers={"Authorization": f"Bearer {token}"}
        )
        frames = Frames(ws)
        try:
            yield frames
        finally:
            await frames.close()

    def console(self, server_id: uuid.UUID, lifetime: int = 60) -> Any:
        path = f"/api/v1/servers/{server_id}/console"
        return self.socket(path, "server.console", f"server:{server_id}", lifetime)

    def node_events(self) -> Any:
        return self.socket("/api/v1/events", "node.events", "node")


class Frames:
    """Everything one socket received, read by a background task."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.received: list[dict[str, Any]] = []
        self.close_code: int | None = None
        self._changed = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self.ws:
            if message.type == aiohttp.WSMsgType.TEXT:
                self.received.append(json.loads(message.data))
                self._changed.set()
        self.close_code = self.ws.close_code
        self._changed.set()

    async def send(self, event: str, *args: str) -> None:
        await self.ws.send_str(json.dumps({"event": event, "args": list(args)}))

    async def wait_for(
        self, accept: Callable[[dict[str, Any]], bool], timeout: float = 15.0
    ) -> dict[str, Any]:
        """The first frame (already received or coming) that passes ``accept``."""
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for frame in self.received[seen:]:
                if accept(frame):
                    return frame
            seen = len(self.received)
            if self._reader.done():
                raise AssertionError(f"socket closed ({self.close_code}); got {self.received}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no such frame in {timeout} s; got {self.received[-20:]}")
            self._changed.clear()
            with suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)

    async def wait_closed(self, timeout: float = 15.0) -> int | None:
        await asyncio.wait_for(asyncio.shield(self._reader), timeout)
        return self.close_code

    def console_lines(self) -> list[str]:
        return [f["args"][0] for f in self.received if f.get("event") == "console output"]

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)


def output_line(text: str) -> Callable[[dict[str, Any]], bool]:
    return lambda f: f.get("event") == "console output" and f["args"] == [text]


def status(state: str) -> Callable[[dict[str, Any]], bool]:
    return lambda f: f.get("event") == "status" and f["args"] == [state]


def node_state(server_id: uuid.UUID, state: str) -> Callable[[dict[str, Any]], bool]:
    return lambda e: (
        e.get("type") == "state" and e["server"] == str(server_id) and (e["state"] == state)
    )


@dataclass
class LiveServers:
    """The game servers a test made through one agent's signed API.

    Every spec handed out is remembered: :meth:`cleanup` deletes each server through the agent,
    removes whatever is still labelled for it and its volume directory, even when the test
    failed half-way.
    """

    agent: AgentProcess
    api: SignedAgentClient
    docker: aiodocker.Docker
    # Fields that this test's specs have unless a call changes them (over server_spec's).
    defaults: dict[str, Any] = field(default_factory=dict)
    specs: dict[uuid.UUID, dict[str, Any]] = field(default_factory=dict)

    def spec(self, **changes: Any) -> dict[str, Any]:
        """:func:`server_spec` with ``defaults`` and ``changes``; removed at teardown."""
        spec = server_spec(**{**self.defaults, **changes})
        self.specs[uuid.UUID(spec["uuid"])] = spec
        return spec

    async def create(self, **changes: Any) -> uuid.UUID:
        spec = self.spec(**changes)
        answer = await self.api.create(spec)
        assert answer.status == 201, answer.body
        return uuid.UUID(spec["uuid"])

    async def started(self, **changes: Any) -> uuid.UUID:
        """A new server, started, with its first line printed."""
        server_id = await self.create(**changes)
        answer = await self.api.power(server_id, "start")
        assert answer.status == 200, answer.body
        assert answer.body["state"] == "running", answer.body
        return server_id

    def volume(self, server_id: uuid.UUID) -> Path:
        """Where the directory backend keeps the server's files."""
        return self.agent.data_dir / "volumes" / str(server_id)

    async def remove_servers(self) -> None:
        """Delete every server through the agent (if it runs) and its labelled containers."""
        for server_id in self.specs:
            if self.agent.running:
                await self.api.delete(server_id)
            leftovers = await self.docker.containers.list(
                all=True, filters={"label": [f"{SERVER_LABEL}={server_id}"]}
            )
            for container in leftovers:
                await remove_container(container)

    async def cleanup(self) -> None:
        await self.remove_servers()
        for server_id in self.specs:
            shutil.rmtree(self.volume(server_id), ignore_errors=True)


async def eventually(check: Callable[[], Any], timeout: float = 15.0) -> Any:
    """Await ``check()`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached in {timeout} s (last: {result!r})")
        await asyncio.sleep(0.1)


async def read_body(api: LiveClient, server_id: uuid.UUID) -> dict[str, Any]:
    answer = await api.read(server_id)
    assert answer.status == 200, answer.body
    body: dict[str, Any] = answer.body
    return body
