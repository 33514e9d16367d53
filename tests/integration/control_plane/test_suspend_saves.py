"""Suspending a running server stops its game the way its blueprint says (its stop command,
then a kill after the grace time), so the game saves its world first.

It used to kill the game at once (SIGKILL): everything played since the last autosave was
lost, and a save cut in the middle left a damaged world — for what is meant as a pause (an
unpaid invoice), undone by an unsuspend.
"""

from __future__ import annotations

import uuid

import aiodocker
import pytest

from node_agent.docker.hardening import game_container_name
from tests.integration.control_plane.stack import Stack, wait_for_state

pytestmark = pytest.mark.docker


async def test_suspending_a_running_server_lets_its_game_save(stack: Stack) -> None:
    server_id, _owner = await stack.owned_server("suspended@example.org")
    await stack.admin.json(
        "POST", f"/api/v1/servers/{server_id}/power", status=202, json={"action": "start"}
    )
    await wait_for_state(stack.admin, server_id, "running")

    suspended = await stack.admin.json("POST", f"/api/v1/servers/{server_id}/suspend")
    assert suspended["suspended"] is True
    await wait_for_state(stack.admin, server_id, "offline")

    # The game got its stop command and ran its own shutdown (where a game saves), rather
    # than dying of SIGKILL (137) in the middle of whatever it was writing.
    async with aiodocker.Docker() as docker:
        info = await docker.containers.container(game_container_name(uuid.UUID(server_id))).show()
    assert info["State"]["ExitCode"] == 0, info["State"]
