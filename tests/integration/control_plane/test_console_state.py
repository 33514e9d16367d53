"""A console hears the state the control plane records (``state`` events), on SQLite (handed
over in-process after the commit) and on PostgreSQL (NOTIFY, heard back by the replica that
recorded it); a change that was rolled back is never announced."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import aiohttp
import pytest

from control_plane.db.models import Server
from control_plane.db.session import transaction
from control_plane.keys import SESSIONS
from control_plane.services.servers.state import change_state
from tests.integration.control_plane.stack import Stack

pytestmark = pytest.mark.docker


async def next_state(socket: aiohttp.ClientWebSocketResponse) -> list[Any]:
    """The next ``state`` event's args, skipping the node's own frames."""
    async with asyncio.timeout(30):
        while True:
            message = await socket.receive()
            assert message.type == aiohttp.WSMsgType.TEXT, message
            frame = json.loads(message.data)
            if frame.get("event") == "state":
                return list(frame["args"])


async def crash_then_roll_back(sessions: Any, server_id: str) -> None:
    async with transaction(sessions) as db:
        server = await db.get(Server, uuid.UUID(server_id))
        assert server is not None
        await change_state(db, server, "crashed")
        raise RuntimeError("rolled back")


async def test_a_console_hears_each_recorded_state_change_and_no_rolled_back_one(
    stack: Stack,
) -> None:
    server_id, owner = await stack.owned_server("owner@example.org")
    base = f"/api/v1/servers/{server_id}"
    sessions = stack.panel.server.app[SESSIONS]
    async with owner.client.ws_connect(f"{base}/console") as console:
        # Rolled back: nothing is said.
        with pytest.raises(RuntimeError):
            await crash_then_roll_back(sessions, server_id)
        await owner.json("POST", f"{base}/power", status=202, json={"action": "start"})
        seen = [await next_state(console)]
        while seen[-1][0] != "running":
            seen.append(await next_state(console))
        assert "crashed" not in [state for state, _ in seen]
        # Each change once, each one naming the state it replaced.
        for (_, previous), (state, _) in zip(seen[1:], seen, strict=False):
            assert previous == state
        await owner.json("POST", f"{base}/power", status=202, json={"action": "stop"})
        while (await next_state(console))[0] != "offline":
            pass
