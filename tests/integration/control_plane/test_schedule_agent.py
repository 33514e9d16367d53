"""Scheduled tasks reach a real agent: the power actions start and stop a real container, and
"delete old backups" removes the node's archives beyond the newest, never a locked one."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from typing import Any

import pytest
from sqlalchemy import update

from control_plane.db.models import Schedule
from control_plane.db.session import transaction
from control_plane.keys import SESSIONS
from node_agent.backups.store import BACKUPS_DIR
from tests.integration.control_plane.stack import Stack, wait_for_backup, wait_for_state
from tests.support.panel import Browser

pytestmark = pytest.mark.docker


@pytest.fixture
def stack_environment(stack_environment: dict[str, str]) -> dict[str, str]:
    return {
        **stack_environment,
        "STELLAR_SCHEDULE_TICK_SECONDS": "0.5",
        "STELLAR_BACKUP_LIMIT": "5",
    }


async def finished_run(browser: Browser, path: str, timeout: float = 60) -> dict[str, Any]:
    """The newest run of the schedule at ``path`` once it has ended."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = (await browser.json("GET", path + "/runs"))["data"]
        if runs and runs[0]["status"] != "running":
            return dict(runs[0])
        await asyncio.sleep(0.3)
    pytest.fail(f"{path}: no run ended within {timeout} s")


async def test_scheduled_power_actions_reach_the_real_agent(stack: Stack) -> None:
    server_id, owner = await stack.owned_server("scheduler@example.org")
    base = f"/api/v1/servers/{server_id}/schedules"
    start = await owner.json(
        "POST",
        base,
        status=201,
        json={
            "name": "boot",
            "cron": "0 4 * * *",
            "tasks": [{"action": "power", "power": "start"}],
        },
    )
    # "Run now": the start reaches the agent, which starts the container.
    await owner.json("POST", f"{base}/{start['id']}/run", status=202)
    run = await finished_run(owner, f"{base}/{start['id']}")
    assert run["status"] == "completed", run
    await wait_for_state(owner, server_id, "running")  # from the node's event stream

    # A cron occurrence, claimed by the app's own scheduler loop, stops it again.
    stop = await owner.json(
        "POST",
        base,
        status=201,
        json={"name": "halt", "cron": "0 5 * * *", "tasks": [{"action": "power", "power": "stop"}]},
    )
    async with transaction(stack.panel.server.app[SESSIONS]) as db:
        await db.execute(
            update(Schedule)
            .where(Schedule.id == uuid.UUID(stop["id"]))
            .values(next_run_at=dt.datetime.now(dt.UTC))
        )
    run = await finished_run(owner, f"{base}/{stop['id']}")
    assert (run["trigger"], run["status"]) == ("cron", "completed"), run
    await wait_for_state(owner, server_id, "offline")

    trail = await stack.admin.json(
        "GET", f"/api/v1/audit?target_type=server&target_id={server_id}&per_page=100"
    )
    power = [e for e in trail["data"] if e["action"].startswith("server.power.")]
    assert {e["action"] for e in power} == {"server.power.start", "server.power.stop"}
    assert all("scheduler" in str(e) for e in power)


async def test_deleting_old_backups_keeps_the_newest_and_the_locked_ones(stack: Stack) -> None:
    server_id, owner = await stack.owned_server("pruner@example.org")
    backups = f"/api/v1/servers/{server_id}/backups"
    made = []
    for name in ("oldest", "older", "old", "newest"):
        backup = await owner.json("POST", backups, status=202, json={"name": name})
        await wait_for_backup(owner, f"{backups}/{backup['id']}")
        made.append(backup["id"])
    await owner.json("PATCH", f"{backups}/{made[0]}", json={"locked": True})
    archives = stack.agent.data_dir / BACKUPS_DIR / server_id
    assert {path.name.split(".")[0] for path in archives.iterdir()} == set(made)
    base = f"/api/v1/servers/{server_id}/schedules"
    prune = await owner.json(
        "POST",
        base,
        status=201,
        json={
            "name": "prune",
            "cron": "0 3 * * *",
            "tasks": [{"action": "delete_backups", "keep": 1}],
        },
    )

    await owner.json("POST", f"{base}/{prune['id']}/run", status=202)
    run = await finished_run(owner, f"{base}/{prune['id']}")

    assert run["status"] == "completed", run
    assert run["outcomes"][0]["reason"] == "deleted 2 backup(s)"
    left = [b["name"] for b in (await owner.json("GET", backups))["data"]]
    assert sorted(left) == ["newest", "oldest"]
    for gone in made[1:3]:
        await owner.json("GET", f"{backups}/{gone}", status=404)
    trail = await stack.admin.json("GET", "/api/v1/audit?action=server.backup.deleted")
    assert sorted(e["details"]["backup"] for e in trail["data"]) == sorted(made[1:3])
    # The node's archives (and their records) went too.
    assert {path.name.split(".")[0] for path in archives.iterdir()} == {made[0], made[3]}


async def test_failed_backups_never_take_the_place_of_good_ones(stack: Stack) -> None:
    """A game can make every backup fail (here a sparse file past the disk limit). A failed
    backup holds nothing, yet it counted as one kept: "keep 2" after two failed runs deleted
    every good backup, and at the server's limit each new (failing) backup deleted the oldest
    good one. Now failed ones go first and never count as kept."""
    server_id, owner = await stack.owned_server("failing@example.org")
    backups = f"/api/v1/servers/{server_id}/backups"

    async def backup(name: str) -> dict[str, Any]:
        made = await owner.json("POST", backups, status=202, json={"name": name})
        return await wait_for_backup(owner, f"{backups}/{made['id']}")

    good = [await backup(name) for name in ("good-1", "good-2")]
    assert [b["status"] for b in good] == ["completed", "completed"]
    with (stack.volume(server_id) / "sparse.bin").open("wb") as sparse:
        sparse.truncate(2 * 1024**3)  # 2 GiB of nothing: more than the 1 GiB limit
    # The limit is 5: the fourth failure makes room, and a failed backup goes, not good-1.
    failed = [await backup(f"failed-{n}") for n in range(1, 5)]
    assert {b["status"] for b in failed} == {"failed"}, failed
    left = [b["name"] for b in (await owner.json("GET", backups))["data"]]
    assert sorted(left) == ["failed-2", "failed-3", "failed-4", "good-1", "good-2"]

    base = f"/api/v1/servers/{server_id}/schedules"
    prune = await owner.json(
        "POST",
        base,
        status=201,
        json={
            "name": "prune",
            "cron": "0 3 * * *",
            "tasks": [{"action": "delete_backups", "keep": 2}],
        },
    )
    await owner.json("POST", f"{base}/{prune['id']}/run", status=202)
    run = await finished_run(owner, f"{base}/{prune['id']}")

    assert run["status"] == "completed", run
    left = [b["name"] for b in (await owner.json("GET", backups))["data"]]
    assert sorted(left) == ["good-1", "good-2"]
    archives = stack.agent.data_dir / BACKUPS_DIR / server_id
    assert {path.name.split(".")[0] for path in archives.iterdir()} == {b["id"] for b in good}
