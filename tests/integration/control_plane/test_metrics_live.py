"""Metrics and resource history with a real agent running a real container: node calls counted
by node, action and outcome; the agent's metrics read only with a signed command; a short run
of a game becomes resource history on the control plane."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from control_plane.keys import SETTINGS
from control_plane.security.command_signing import CommandSigner
from tests.integration.control_plane.stack import Stack, wait_for_backup, wait_for_state
from tests.integration.control_plane.test_metrics import metrics_key, scrape
from tests.support.panel import Browser
from tests.support.scrape import Scrape

pytestmark = pytest.mark.docker


@pytest.fixture
def stack_agent_settings() -> dict[str, Any]:
    # Samples twice a second, so a short run fills a few 10 s buckets.
    return {"stats_sample_seconds": 0.5}


async def eventually(browser: Browser, path: str, check: Any, timeout: float = 30) -> Scrape:
    """Scrape ``path`` until ``check(scrape)`` holds (what the node reports takes a moment)."""
    deadline = time.monotonic() + timeout
    while True:
        seen = await scrape(browser, path)
        if check(seen):
            return seen
        if time.monotonic() > deadline:
            pytest.fail(f"{path} never showed what was expected:\n{seen.text}")
        await asyncio.sleep(0.3)


async def test_node_calls_agent_metrics_and_history_from_a_real_game(
    stack: Stack, tmp_path: Path
) -> None:
    server_id, owner = await stack.owned_server("player@example.org")
    base = f"/api/v1/servers/{server_id}"
    world = b"w" * 200_000
    await owner.json("PUT", f"{base}/files/contents?path=/world.dat", data=world)
    await owner.json("POST", f"{base}/power", status=202, json={"action": "start"})
    await wait_for_state(owner, server_id, "running")
    scraper = await metrics_key(stack.admin, stack.panel, ["metrics"])

    # The control plane: the real calls it made to the real agent, and the node's stream.
    seen = await eventually(
        scraper,
        "/metrics",
        lambda s: (
            s.value("stellar_node_up", node="node-1") == 1
            and s.value("stellar_node_event_stream_lag_seconds", node="node-1") is not None
        ),
    )
    for action in ("server.create", "server.power", "node.system"):
        calls = seen.value("stellar_node_calls_total", node="node-1", action=action, outcome="ok")
        assert (calls or 0) >= 1, action
        timed = seen.value("stellar_node_call_duration_seconds_count", node="node-1", action=action)
        assert (timed or 0) >= 1, action
    assert seen.value("stellar_node_event_stream_connected", node="node-1") == 1
    lag = seen.value("stellar_node_event_stream_lag_seconds", node="node-1")
    assert lag is not None
    assert lag < 5
    assert (seen.value("stellar_background_job_runs_total", task="node-health") or 0) >= 1

    # A backup, so the agent has one to count.
    backups = f"{base}/backups"
    created = await owner.json("POST", backups, status=202, json={"name": "b"})
    assert (await wait_for_backup(owner, f"{backups}/{created['id']}"))["status"] == "completed"

    # The agent's metrics, relayed with a signed command.
    node_path = f"/metrics/nodes/{stack.node_id}"
    agent = await eventually(
        scraper,
        node_path,
        lambda s: (
            s.value("stellar_agent_disk_limit_bytes", server=server_id) is not None
            and s.value("stellar_agent_backups_total", operation="create", status="completed")
        ),
    )
    assert agent.value("stellar_agent_servers", state="running") == 1
    assert agent.value(
        "stellar_agent_container_operations_total", operation="server.create", outcome="ok"
    )
    assert agent.value(
        "stellar_agent_container_operation_duration_seconds_count", operation="server.power"
    )
    assert agent.value("stellar_agent_disk_limit_bytes", server=server_id) == 1024 * 1024 * 1024
    assert agent.value("stellar_agent_backup_size_bytes_count") == 1
    assert agent.value("stellar_agent_backup_duration_seconds_count", operation="create") == 1

    # Straight to the agent: nothing without a signed command for exactly this action.
    async with aiohttp.ClientSession() as session:
        url = f"{stack.agent.base_url}/api/v1/metrics"
        async with session.get(url) as unsigned:
            assert unsigned.status == 401
        settings = stack.panel.server.app[SETTINGS]
        signer = CommandSigner.from_file(tmp_path / "signing.key", issuer=settings.issuer)
        other_action = signer.sign(
            node_id=uuid.UUID(stack.node_id),
            subject="node",
            action="node.system",
            method="GET",
            path="/api/v1/metrics",
            body=b"",
            user="test",
        )
        headers = {"Authorization": f"Bearer {other_action}"}
        async with session.get(url, headers=headers) as wrong:
            assert wrong.status == 401
    refused = await scrape(scraper, node_path)
    assert refused.value("stellar_agent_command_refusals_total", reason="no bearer token") == 1
    assert refused.value("stellar_agent_command_refusals_total", reason="wrong act") == 1

    # A short run of the game is resource history: 10 s points from the agent's samples.
    deadline = time.monotonic() + 40
    points: list[dict[str, Any]] = []
    while len(points) < 2 and time.monotonic() < deadline:
        await asyncio.sleep(1)
        body = await owner.json("GET", f"{base}/stats/history?range=15m")
        points = body["points"]
    assert len(points) >= 2, points
    assert body["resolution_seconds"] == 10
    full = points[-1]
    assert full["samples"] >= 10  # 0.5 s samples over a 10 s bucket
    assert full["memory_bytes"] > 0
    assert full["memory_max_bytes"] >= full["memory_bytes"]
    assert full["network_rx_bytes_per_second"] is not None
    assert full["disk_limit_bytes"] == 1024 * 1024 * 1024
    assert full["disk_used_bytes"] is not None
    assert full["disk_used_bytes"] >= len(world)
