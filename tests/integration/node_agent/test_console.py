"""Game consoles through a real agent and real dockerd: the WebSocket, commands, logs, stats.

The module's agent runs with small console limits (``live_agent.CONSOLE_LIMITS``): 50 lines
a second, 3 sockets per server, 5 inbound messages a second, 4 KiB messages, 2 s grace.
"""

from __future__ import annotations

import re
import uuid

import aiohttp
import pytest

from tests.integration.node_agent.live_agent import (
    LiveAgent,
    LiveClient,
    LiveServers,
    eventually,
    output_line,
    read_body,
    status,
)
from tests.support.containers import BUSYBOX_IMAGE, FAKE_GAME_IMAGE

pytestmark = [pytest.mark.docker, pytest.mark.timeout(120)]
THROTTLE_NOTICE = re.compile(r"^\[stellar\] output throttled: (\d+) lines dropped$")


async def first_line_logged(api: LiveClient, server_id: uuid.UUID) -> list[str]:
    async def logged() -> list[str] | None:
        lines: list[str] = (await api.logs(server_id)).body["lines"]
        return lines if any(line.startswith("fake-game started") for line in lines) else None

    result: list[str] = await eventually(logged)
    return result


async def test_console_socket_sends_recent_lines_then_live_output_and_command_replies(
    servers: LiveServers, api: LiveClient
) -> None:
    server_id = await servers.started()
    await first_line_logged(api, server_id)

    async with api.console(server_id) as console:
        await console.wait_for(status("running"))
        await console.wait_for(lambda f: f["args"][0].startswith("fake-game started"))
        await console.send("send command", "say hello from the console")
        await console.wait_for(output_line("hello from the console"))

        assert (await api.command(server_id, "say hello from the route")).status == 204
        await console.wait_for(output_line("hello from the route"))


async def test_logs_route_returns_the_most_recent_lines(
    servers: LiveServers, api: LiveClient
) -> None:
    server_id = await servers.started()
    await first_line_logged(api, server_id)
    for number in range(5):
        assert (await api.command(server_id, f"say line {number}")).status == 204

    lines = await eventually(lambda: _last_lines(api, server_id, 2), timeout=10)

    assert lines == ["line 3", "line 4"]
    assert (await api.logs(server_id, lines=0)).status == 400
    assert (await api.logs(server_id, lines=5000)).status == 400


async def _last_lines(api: LiveClient, server_id: uuid.UUID, count: int) -> list[str] | None:
    lines: list[str] = (await api.logs(server_id, count)).body["lines"]
    return lines if lines and lines[-1] == "line 4" else None


async def test_stop_typed_on_the_console_ends_the_game_with_exit_0_and_offline(
    servers: LiveServers, api: LiveClient
) -> None:
    server_id = await servers.started()
    await first_line_logged(api, server_id)

    async with api.console(server_id) as console:
        await console.send("send command", "stop")
        await console.wait_for(status("offline"))

    body = await read_body(api, server_id)
    assert (body["state"], body["desired_power"]) == ("offline", "stopped")
    assert body["container"]["exit_code"] == 0


async def test_command_is_refused_when_not_running_while_installing_and_with_control_chars(
    servers: LiveServers, api: LiveClient, live_agent: LiveAgent
) -> None:
    stopped = await servers.create()
    assert (await api.command(stopped, "say hi")).status == 400

    script = "while [ ! -e /home/container/release ]; do sleep 0.1; done"
    installing = await servers.create(install={"image": FAKE_GAME_IMAGE, "script": script})
    answer = await api.command(installing, "say hi")
    assert answer.status == 409
    volumes = list((live_agent.data_dir).rglob(str(installing)))
    for volume in volumes:
        if volume.is_dir():
            (volume / "release").touch()

    running = await servers.started()
    for line in ("say a\nstop", "say \x1b[2J", "say \x00", ""):
        assert (await api.command(running, line)).status == 400


async def test_output_flood_is_throttled_with_one_notice_and_the_game_keeps_running(
    servers: LiveServers, api: LiveClient
) -> None:
    flood = (
        "sleep 1; i=0; while [ $i -lt 3000 ]; do echo flood-$i; i=$((i+1)); done; "
        "sleep 2; echo after-flood; exec sleep 600"
    )
    server_id = await servers.create(
        image=BUSYBOX_IMAGE,
        startup=["sh", "-c", flood],
        stop={"type": "signal", "value": "SIGKILL"},
    )
    before = await api.metrics()
    async with api.console(server_id) as console:
        assert (await api.power(server_id, "start")).status == 200
        await console.wait_for(output_line("after-flood"), timeout=30)

    lines = console.console_lines()
    flooded = [line for line in lines if line.startswith("flood-")]
    notices = [int(m.group(1)) for line in lines if (m := THROTTLE_NOTICE.match(line))]
    assert notices, "no throttle notice"
    assert len(flooded) + sum(notices) == 3000
    # The agent's metrics counted each throttled window and every line it dropped.
    after = await api.metrics()
    for name, grew in (
        ("stellar_agent_console_throttle_events_total", len(notices)),
        ("stellar_agent_console_throttled_lines_total", sum(notices)),
    ):
        assert after.total(name) - before.total(name) == grew, name
    assert len(flooded) <= 50 * (len(notices) + 1)
    body = await read_body(api, server_id)
    assert body["state"] == "running"
    assert body["container"]["running"] is True


async def test_fourth_console_socket_is_refused_with_429(
    servers: LiveServers, api: LiveClient
) -> None:
    server_id = await servers.started()

    async with api.console(server_id), api.console(server_id), api.console(server_id):
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            async with api.console(server_id):
                pass
        assert refused.value.status == 429
    async with api.console(server_id) as again:
        await again.wait_for(status("running"))


async def test_oversized_message_closes_the_socket_with_1009(
    servers: LiveServers, api: LiveClient
) -> None:
    server_id = await servers.started()

    async with api.console(server_id) as console:
        await console.wait_for(status("running"))
        await console.send("send command", "say " + "x" * 5000)
        assert await console.wait_closed() == 1009


async def test_inbound_message_flood_is_dropped_with_an_error_event(
    servers: LiveServers, api: LiveClient
) -> None:
    server_id = await servers.started()

    async with api.console(server_id) as console:
        for number in range(20):
            await console.send("send command", f"say burst {number}")
        error = await console.wait_for(lambda f: f["event"] == "error")
        await console.wait_for(output_line("burst 4"))

    assert "too many messages" in error["args"][0]
    assert "burst 19" not in console.console_lines()


async def test_console_socket_is_closed_at_token_expiry_unless_renewed(
    servers: LiveServers, api: LiveClient
) -> None:
    server_id = await servers.started()
    path = f"/api/v1/servers/{server_id}/console"

    async with (
        api.console(server_id, lifetime=2) as renewed,
        api.console(server_id, lifetime=2) as expiring,
    ):
        await renewed.wait_for(lambda f: f["event"] == "token expiring")
        await renewed.send("auth", api.token(path, "server.console", f"server:{server_id}"))
        await renewed.wait_for(lambda f: f["event"] == "auth success")
        assert await expiring.wait_closed(timeout=10) == 4001
        await api.command(server_id, "say still here")
        await renewed.wait_for(output_line("still here"))


async def test_stats_report_memory_pids_and_uptime_of_a_running_game(
    servers: LiveServers, api: LiveClient
) -> None:
    server_id = await servers.started()

    answer = await api.stats(server_id)

    assert answer.status == 200, answer.body
    stats = answer.body
    assert stats["state"] == "running"
    assert 0 < stats["memory_bytes"] <= stats["memory_limit_bytes"] == 64 * 1024 * 1024
    assert stats["pids"] >= 2
    assert stats["uptime_seconds"] is not None
    assert stats["uptime_seconds"] >= 0
    assert stats["cpu_percent"] >= 0
    async with api.console(server_id) as console:
        await console.send("send stats")
        frame = await console.wait_for(lambda f: f["event"] == "stats")
    assert frame["args"][0]["memory_limit_bytes"] == 64 * 1024 * 1024
    stopped = await servers.create()
    idle = (await api.stats(stopped)).body
    assert (idle["state"], idle["memory_bytes"], idle["uptime_seconds"]) == ("offline", 0, None)


async def test_a_power_action_outlives_the_console_that_asked_for_it(
    servers: LiveServers, api: LiveClient
) -> None:
    """A user who clicks "start" and closes the tab at once still gets a started server."""
    server_id = await servers.create()

    async with api.console(server_id) as console:
        await console.wait_for(status("offline"))
        await console.send("set state", "start")

    async def running() -> bool | None:
        body = await read_body(api, server_id)
        return True if body["state"] == "running" and body["container"]["running"] else None

    assert await eventually(running, timeout=20)
