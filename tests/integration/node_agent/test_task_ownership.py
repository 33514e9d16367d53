"""Every task the agent starts is owned: cancelled and awaited, never left to the collector.

A task dropped while pending is logged by asyncio as ``Task was destroyed but it is
pending!`` when the garbage collector finds it, and a failed one nobody awaited as ``Task
exception was never retrieved``. Consoles and event sockets opened and closed in every way,
stats asked for and abandoned, and a backup taken and downloaded must leave none of these
(nor an un-awaited coroutine) in a real agent's log.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest

from tests.integration.node_agent.backups_client import BackupsClient, new_key
from tests.integration.node_agent.files_client import FilesClient
from tests.integration.node_agent.live_agent import (
    LiveAgent,
    LiveServers,
    output_line,
    status,
)

pytestmark = [pytest.mark.docker, pytest.mark.own_agent, pytest.mark.timeout(180)]
UNOWNED = ("Task was destroyed", "Task exception was never retrieved", "was never awaited")


def unowned_task_lines(agent: LiveAgent) -> list[str]:
    return [line for line in agent.log_text().splitlines() if any(s in line for s in UNOWNED)]


async def test_consoles_events_stats_and_a_backup_leave_no_unowned_task(
    live_agent: LiveAgent, servers: LiveServers, api: FilesClient
) -> None:
    server_id = await servers.started()
    for n in range(6):
        async with api.console(server_id) as console:
            await console.wait_for(status("running"))
            await console.send("send command", f"say hello {n}")
            await console.wait_for(output_line(f"hello {n}"))
            # Asked for and abandoned: the socket closes while the stats are measured.
            await console.send("send stats")
    async with api.node_events() as events:
        await events.ws.send_str('{"event": "auth", "args": ["not a token"]}')
        await events.wait_for(lambda frame: frame.get("type") == "error")

    backups = BackupsClient(api)
    backup_id, answer = await backups.create(
        server_id, new_key(), pre_command="say saving", pre_command_wait_seconds=0
    )
    assert answer.status == 202, answer
    assert (await backups.finished(server_id, backup_id))["status"] == "completed"
    code, _blob = await backups.download(server_id, backup_id)
    assert code == 200
    # Some garbage-collector runs: a task dropped while pending is reported when collected.
    await asyncio.gather(*(api.read(server_id) for _ in range(300)))
    assert await _closed_console_after_stop(api, server_id) == 1001

    live_agent.stop()
    assert unowned_task_lines(live_agent) == []


async def _closed_console_after_stop(api: FilesClient, server_id: uuid.UUID) -> int | None:
    """A console the agent closes itself (the server is deleted under it)."""
    async with api.console(server_id) as console:
        await console.wait_for(status("running"))
        assert (await api.delete(server_id)).status == 204
        code: int | None = await console.wait_closed()
        return code
