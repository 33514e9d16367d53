"""``stellar-cp server console ID``: a game's console in the terminal.

Prints the game's recent lines, then its output as it comes; each line read from stdin is
typed on the game's console (``list`` on the Freeciv demo). At the end of stdin (Ctrl-D, or
the end of a pipe) it leaves once the game has been quiet for a moment, so
``echo list | stellar-cp server console ID`` prints the answer; Ctrl-C leaves at once.

It talks to the server's node as the control plane's console does, with commands signed by
the control plane's key (so it needs the control plane's environment, as ``node ping``
does), and records each command in the audit trail as the web console's are.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Final, TextIO

import aiohttp

from control_plane.cli_nodes import CLI_USER, CliContext, cli_context
from control_plane.db.models import Node, Server
from control_plane.db.session import transaction
from control_plane.errors import NotFound
from control_plane.services import audit
from control_plane.settings import ControlPlaneSettings

# After the end of stdin, leave once the game printed nothing for this long.
QUIET_SECONDS: Final = 2.0


@dataclass
class _Output:
    """Writes the node's console frames; ``printed`` is set at each line of the game's."""

    out: TextIO
    err: TextIO
    printed: asyncio.Event = field(default_factory=asyncio.Event)

    def show(self, frame: dict[str, object]) -> None:
        args = frame.get("args")
        first = args[0] if isinstance(args, list) and args else ""
        event = frame.get("event")
        if event == "console output":
            self.out.write(f"{first}\n")
            self.out.flush()
            self.printed.set()
        elif event == "status":
            self.err.write(f"[server is {first}]\n")
        elif event == "error":
            self.err.write(f"[error: {first}]\n")


async def _stdin_lines(stdin: TextIO) -> AsyncIterator[str]:
    """stdin's lines without blocking the event loop (a pipe or terminal; a file is read)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    try:
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), stdin)
    except ValueError:  # a regular file: nothing to wait for
        for line in stdin:
            yield line.rstrip("\n")
        return
    while line_bytes := await reader.readline():
        yield line_bytes.decode(errors="replace").rstrip("\n")


async def _server_and_node(cli: CliContext, server_id: uuid.UUID) -> tuple[Server, Node]:
    async with transaction(cli.sessions) as db:
        server = await db.get(Server, server_id)
        if server is None:
            raise NotFound(f"no server {server_id}")
        node = await db.get(Node, server.node_id)
        if node is None:
            raise NotFound("the server's node no longer exists")
        return server, node


async def _audit_command(cli: CliContext, server_id: uuid.UUID, line: str) -> None:
    async with transaction(cli.sessions) as db:
        await audit.append(
            db,
            None,
            audit.AuditEvent(
                "server.console.command",
                target_type="server",
                target_id=str(server_id),
                details={"command": line[:200], "by": "cli"},
            ),
        )


async def run_console(
    settings: ControlPlaneSettings,
    server_id: uuid.UUID,
    *,
    stdin: TextIO = sys.stdin,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
    quiet_seconds: float = QUIET_SECONDS,
) -> int:
    """Relay between the terminal and the game's console until stdin ends (or Ctrl-C)."""
    async with cli_context(settings) as cli:
        server, node = await _server_and_node(cli, server_id)
        socket = await cli.nodes.open_console(node, server.id, user=CLI_USER)
        output = _Output(out, err)

        async def from_node() -> None:
            async for message in socket:
                if message.type != aiohttp.WSMsgType.TEXT:
                    break
                frame = json.loads(message.data)
                if frame.get("event") == "token expiring":
                    token = cli.nodes.console_token(node, server.id, user=CLI_USER)
                    await socket.send_json({"event": "auth", "args": [token]})
                elif isinstance(frame, dict):
                    output.show(frame)

        async def to_node() -> None:
            async for line in _stdin_lines(stdin):
                if line.strip():
                    await socket.send_json({"event": "send command", "args": [line]})
                    await _audit_command(cli, server.id, line)
            # End of input: let the game finish its answer.
            while True:
                output.printed.clear()
                try:
                    await asyncio.wait_for(output.printed.wait(), quiet_seconds)
                except TimeoutError:
                    return

        tasks = [asyncio.create_task(from_node()), asyncio.create_task(to_node())]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await socket.close()
        for task in done:
            task.result()  # a failure of either side is the command's
        if tasks[0] in done:
            err.write("[the node closed the console]\n")
            return 1
    return 0
