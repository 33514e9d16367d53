"""Stopping a game with its signal, and an egg image running the blueprint's ``STARTUP``,
on a real agent with real containers.

``signal-game`` (in the test images) writes the signal it got to ``signal`` in its volume:
a blueprint whose stop is ``^C`` (imported as the signal SIGINT) makes the game record
SIGINT and exit by itself; one that ignores it is killed when ``stop_timeout_seconds`` is
over. The egg image's command is a yolks-style entrypoint that turns ``{{X}}`` into ``${X}``
in ``STARTUP`` and evaluates it: a variable's value with ``;``, ``$(…)`` or backquotes stays
a value, unless it is pasted into the template (as Wings does), which the last test shows.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import aiodocker
import pytest

from node_agent.docker.hardening import game_container_name
from tests.integration.node_agent.live_agent import LiveClient, LiveServers, eventually, read_body
from tests.support.containers import EGG_IMAGE

pytestmark = [pytest.mark.docker, pytest.mark.timeout(180)]
CTRL_C = {"type": "signal", "value": "SIGINT"}
# Files a value would create if a shell ever ran it as a command.
TRAPS = ("by-semicolon", "by-substitution", "by-backquotes")
HOSTILE = (
    "x; touch /home/container/by-semicolon $(touch /home/container/by-substitution) "
    "`touch /home/container/by-backquotes`"
)


async def inspect(docker: aiodocker.Docker, server_id: uuid.UUID) -> dict[str, Any]:
    info: dict[str, Any] = await docker.containers.container(game_container_name(server_id)).show()
    return info


async def logged(api: LiveClient, server_id: uuid.UUID, text: str) -> list[str]:
    async def lines() -> list[str]:
        found: list[str] = (await api.logs(server_id)).body["lines"]
        return found if any(text in line for line in found) else []

    result: list[str] = await eventually(lines, timeout=20)
    return result


async def offline(api: LiveClient, server_id: uuid.UUID) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        body = await read_body(api, server_id)
        return body if body["state"] == "offline" and not body["stopping"] else None

    result: dict[str, Any] = await eventually(check, timeout=30)
    return result


async def signal_game(servers: LiveServers, api: LiveClient, **changes: Any) -> uuid.UUID:
    """A started signal-game whose stop is ^C, ``running`` once it said it is ready."""
    server_id = await servers.create(
        image=EGG_IMAGE,
        startup=["signal-game"],
        stop=CTRL_C,
        startup_done=["signal-game ready"],
        **changes,
    )
    assert (await api.power(server_id, "start")).status == 200
    await eventually(lambda: _state_is(api, server_id, "running"))
    return server_id


async def _state_is(api: LiveClient, server_id: uuid.UUID, state: str) -> bool:
    return bool((await read_body(api, server_id))["state"] == state)


def recorded_signals(servers: LiveServers, server_id: uuid.UUID) -> list[str]:
    path = servers.volume(server_id) / "signal"
    return path.read_text().split() if path.exists() else []


async def test_a_ctrl_c_stop_delivers_sigint_and_the_game_exits_by_itself(
    servers: LiveServers, api: LiveClient, docker: aiodocker.Docker
) -> None:
    server_id = await signal_game(servers, api, stop_timeout_seconds=20)
    assert (await inspect(docker, server_id))["Config"]["StopSignal"] == "SIGINT"

    started = time.monotonic()
    assert (await api.power(server_id, "stop")).status == 202
    body = await offline(api, server_id)
    elapsed = time.monotonic() - started

    assert recorded_signals(servers, server_id) == ["SIGINT"]
    assert (body["container"]["exit_code"], body["desired_power"]) == (0, "stopped")
    assert elapsed < 10, f"the stop took {elapsed:.1f} s: the game did not end on SIGINT"
    assert any("got SIGINT" in line for line in (await api.logs(server_id)).body["lines"])


async def test_a_game_that_ignores_its_stop_signal_is_killed_after_the_timeout(
    servers: LiveServers, api: LiveClient
) -> None:
    server_id = await signal_game(
        servers, api, stop_timeout_seconds=3, environment={"IGNORE_SIGNALS": "1"}
    )

    started = time.monotonic()
    assert (await api.power(server_id, "stop")).status == 202
    await logged(api, server_id, "got SIGINT")
    assert (await read_body(api, server_id))["state"] == "stopping"
    body = await offline(api, server_id)
    elapsed = time.monotonic() - started

    assert recorded_signals(servers, server_id) == ["SIGINT"]
    # SIGKILL: 128 + 9; an exit the user asked for, so offline, not crashed.
    assert (body["container"]["exit_code"], body["state"]) == (137, "offline")
    assert 3 <= elapsed < 15, f"killed after {elapsed:.1f} s, the timeout is 3 s"


async def test_an_egg_image_runs_startup_with_values_only_from_the_environment(
    servers: LiveServers, api: LiveClient, docker: aiodocker.Docker
) -> None:
    template = "fake-game --name={{GAME_NAME}} --port={{SERVER_PORT}}"
    server_id = await servers.create(
        image=EGG_IMAGE,
        image_command=True,
        startup=["ignored", "when", "the", "image", "command", "runs"],
        startup_template=template,
        environment={"GAME_NAME": HOSTILE},
        startup_done=[r"regex:^fake-game started on port \d+ as uid 1000$"],
    )
    info = await inspect(docker, server_id)
    assert info["Config"]["Cmd"] == ["/entrypoint.sh"]
    env = dict(entry.split("=", 1) for entry in info["Config"]["Env"])
    assert (env["STARTUP"], env["GAME_NAME"]) == (template, HOSTILE)

    assert (await api.power(server_id, "start")).status == 200
    await eventually(lambda: _state_is(api, server_id, "running"))
    lines = await logged(api, server_id, "fake-game arguments")

    port = servers.specs[server_id]["allocations"][0]["port"]
    words = HOSTILE.split(" ")
    expected = " ".join(f"[{word}]" for word in [f"--name={words[0]}", *words[1:]])
    assert f"fake-game arguments: {expected} [--port={port}]" in lines
    assert _traps_sprung(servers.volume(server_id)) == []


async def test_a_value_pasted_into_startup_would_run_which_is_why_it_never_is(
    servers: LiveServers, api: LiveClient
) -> None:
    # The control: what Wings does (values put into STARTUP's text) runs the value.
    server_id = await servers.create(
        image=EGG_IMAGE,
        image_command=True,
        startup_template=f"fake-game --name={HOSTILE}",
        startup_done=["fake-game started"],
    )
    assert (await api.power(server_id, "start")).status == 200
    await eventually(lambda: _state_is(api, server_id, "running"))

    assert _traps_sprung(servers.volume(server_id)) == sorted(TRAPS)


def _traps_sprung(volume: Path) -> list[str]:
    return sorted(name for name in TRAPS if (volume / name).exists())
