"""The hook the start path calls: set the server's configuration files before its game runs.

Never fails a start: whatever goes wrong is one notice on the game's console (and a log
line), and the game starts with its files as they are.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import structlog

from node_agent.configs.apply import apply_config_files
from node_agent.configs.placeholders import PlaceholderValues
from node_agent.docker.hardening import GAME_USER
from shared.errors import ApiError

if TYPE_CHECKING:
    from node_agent.servers.server import ManagedServer

log = structlog.get_logger("agent.configs")


def _game_user() -> tuple[int, int]:
    uid, gid = (int(part) for part in GAME_USER.split(":"))
    return uid, gid


async def _bridge_address(server: ManagedServer) -> str | None:
    try:
        network = await server.services.network()
    except ApiError:
        return None
    return network.gateway


async def apply_before_start(server: ManagedServer) -> None:
    """Apply the spec's ``config_files`` to the server's volume (the game is not running)."""
    spec = server.spec
    if not spec.config_files:
        return
    values = PlaceholderValues.of(spec, await _bridge_address(server))
    try:
        with server.volume_gate.operation():
            # Parsing a large file is CPU work: off the event loop, with the file I/O.
            outcomes = await asyncio.to_thread(
                apply_config_files, server.volume.path, spec.config_files, values, _game_user()
            )
    except ApiError as err:
        server.console.notice(f"config files not set: {err.message}")
        return
    except Exception:
        log.exception("config files not set", server=str(spec.uuid))
        server.console.notice("config files not set: an internal error (see the agent's log)")
        return
    for outcome in outcomes:
        log.info(
            "config file",
            server=str(spec.uuid),
            path=outcome.path,
            outcome=outcome.outcome,
            problems=list(outcome.problems),
        )
        if outcome.notice is not None:
            server.console.notice(outcome.notice)
