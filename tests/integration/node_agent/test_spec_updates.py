"""Spec updates and reinstall on a real agent and real dockerd.

``PUT /api/v1/servers/{uuid}/spec`` stores the new spec; a stopped game's container is
rebuilt at once, a running one's at its next start or restart; a spec numbered below the one
kept is ignored. ``POST .../reinstall`` runs
the install step again on a stopped server, and is refused while the game runs.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from node_agent.docker.hardening import game_container_name
from tests.integration.node_agent.live_agent import (
    LiveAgent,
    LiveClient,
    LiveServers,
    eventually,
    node_state,
    read_body,
)
from tests.support.containers import FAKE_GAME_IMAGE, Answer, docker_cli

pytestmark = [pytest.mark.docker, pytest.mark.timeout(120)]
# Appends one line per run to a file in the volume, which survives reinstalls.
APPENDING_INSTALL = {
    "image": FAKE_GAME_IMAGE,
    "script": "echo installed >> /home/container/install.log",
}


async def put_spec(api: LiveClient, spec: dict[str, Any]) -> Answer:
    server_id = uuid.UUID(str(spec["uuid"]))
    return await api.send("PUT", server_id, "server.update", suffix="/spec", body=api.encode(spec))


async def reinstall(api: LiveClient, server_id: uuid.UUID) -> Answer:
    return await api.send("POST", server_id, "server.reinstall", suffix="/reinstall")


def container_id(server_id: uuid.UUID) -> str:
    found = docker_cli("inspect", "-f", "{{.Id}}", game_container_name(server_id))
    assert found.returncode == 0, found.stderr
    return found.stdout.strip()


def container_env(server_id: uuid.UUID) -> list[str]:
    found = docker_cli("inspect", "-f", "{{json .Config.Env}}", game_container_name(server_id))
    assert found.returncode == 0, found.stderr
    env: list[str] = json.loads(found.stdout)
    return env


async def test_spec_update_reaches_a_running_game_at_its_restart(
    servers: LiveServers, api: LiveClient
) -> None:
    spec = servers.spec(environment={"GREETING": "one"})
    assert (await api.create(spec)).status == 201
    server_id = uuid.UUID(spec["uuid"])
    assert (await api.power(server_id, "start")).body["state"] == "running"
    assert "GREETING=one" in container_env(server_id)

    # Running: stored now, applied at the next restart.
    answer = await put_spec(api, {**spec, "environment": {"GREETING": "two"}})
    assert answer.status == 200, answer.body
    assert (answer.body["state"], answer.body["spec_pending"]) == ("running", True)
    assert "GREETING=one" in container_env(server_id)

    first_start = (await read_body(api, server_id))["container"]["started_at"]
    assert (await api.power(server_id, "restart")).status == 202

    async def restarted() -> bool:
        body = await read_body(api, server_id)
        container: dict[str, Any] = body["container"] or {}
        started_at = container.get("started_at")
        return bool(body["state"] == "running" and started_at != first_start)

    await eventually(restarted, timeout=30)
    assert "GREETING=two" in container_env(server_id)
    assert (await read_body(api, server_id))["spec_pending"] is False

    # Stopped: the container is rebuilt at once; the volume keeps its files.
    await api.power(server_id, "kill")
    marker = servers.agent.data_dir / "volumes" / str(server_id) / "marker"
    marker.write_text("kept\n")
    answer = await put_spec(api, {**spec, "environment": {"GREETING": "three"}})
    assert answer.status == 200, answer.body
    assert (answer.body["state"], answer.body["spec_pending"]) == ("offline", False)
    assert "GREETING=three" in container_env(server_id)
    assert marker.read_text() == "kept\n"


@pytest.mark.own_agent
async def test_a_spec_older_than_the_one_kept_never_replaces_it_even_after_a_restart(
    servers: LiveServers, api: LiveClient, live_agent: LiveAgent
) -> None:
    """A spec held up on the way (sent before another, or by a control plane that froze
    while sending) arrives after a newer one: the node keeps the newer, and says which."""
    spec = servers.spec(environment={"GREETING": "one"}, revision=4)
    assert (await api.create(spec)).status == 201
    server_id = uuid.UUID(spec["uuid"])
    newer = await put_spec(api, {**spec, "environment": {"GREETING": "three"}, "revision": 6})
    assert (newer.status, newer.body["spec_revision"]) == (200, 6), newer.body

    late = await put_spec(api, {**spec, "environment": {"GREETING": "two"}, "revision": 5})
    assert (late.status, late.body["spec_revision"]) == (200, 6), late.body
    assert "GREETING=three" in container_env(server_id)
    # The same revision again is the same spec sent again: taken as it comes.
    again = await put_spec(api, {**spec, "environment": {"GREETING": "three"}, "revision": 6})
    assert (again.status, again.body["spec_revision"]) == (200, 6), again.body
    # The same spec under a new number (one is numbered before each start) is kept as the
    # newest, and the container is not built again for it.
    built = container_id(server_id)
    renumbered = await put_spec(api, {**spec, "environment": {"GREETING": "three"}, "revision": 7})
    assert renumbered.body["spec_revision"] == 7, renumbered.body
    assert (renumbered.body["spec_pending"], container_id(server_id)) == (False, built)

    live_agent.stop()
    live_agent.start()
    late = await put_spec(api, {**spec, "environment": {"GREETING": "two"}, "revision": 5})
    assert (late.status, late.body["spec_revision"]) == (200, 7), late.body
    assert (await api.power(server_id, "start")).body["state"] == "running"
    assert "GREETING=three" in container_env(server_id)


async def test_spec_update_must_name_the_server_in_the_path(
    servers: LiveServers, api: LiveClient
) -> None:
    server_id = await servers.create()
    other = servers.spec()
    answer = await api.send(
        "PUT", server_id, "server.update", suffix="/spec", body=api.encode(other)
    )
    assert answer.status == 400, answer.body
    # A token for another action is refused.
    wrong = await api.send(
        "PUT", server_id, "server.create", suffix="/spec", body=api.encode(other)
    )
    assert wrong.status == 401


async def test_reinstall_runs_the_install_step_again_and_is_refused_while_running(
    servers: LiveServers, api: LiveClient
) -> None:
    server_id = await servers.create(install=APPENDING_INSTALL)
    log_file = servers.agent.data_dir / "volumes" / str(server_id) / "install.log"

    async def install_phase() -> str | None:
        phase = (await read_body(api, server_id))["install"]
        return None if phase == "installing" else str(phase)

    assert await eventually(install_phase, timeout=30) == "installed"
    assert log_file.read_text() == "installed\n"

    assert (await api.power(server_id, "start")).body["state"] == "running"
    refused = await reinstall(api, server_id)
    assert refused.status == 409, refused.body
    await api.power(server_id, "kill")

    async with api.node_events() as events:
        answer = await reinstall(api, server_id)
        assert answer.status == 202, answer.body
        assert (answer.body["state"], answer.body["install"]) == ("installing", "installing")
        install = await events.wait_for(
            lambda e: e["type"] == "install" and e["server"] == str(server_id), timeout=30
        )
        await events.wait_for(node_state(server_id, "offline"))
    assert install["success"] is True
    assert log_file.read_text() == "installed\ninstalled\n"
    assert (await read_body(api, server_id))["install"] == "installed"
    assert (await api.power(server_id, "start")).body["state"] == "running"


async def test_reinstall_without_an_install_step_rebuilds_the_container(
    servers: LiveServers, api: LiveClient
) -> None:
    server_id = await servers.create()
    answer = await reinstall(api, server_id)
    assert answer.status == 202, answer.body
    assert (answer.body["state"], answer.body["install"]) == ("offline", "none")
    assert container_env(server_id)
