"""What a backup does besides making an archive needs the permission it needs by hand: its
pre-backup command is typed into the console (``console.write``), and at the server's limit
it deletes the oldest backup (``backups.delete``). A sub-user allowed only to make backups
could otherwise type any console line, or wipe the owner's backups one new backup at a time —
through the API or through a schedule. Against a real agent."""

from __future__ import annotations

import os

import pytest

from node_agent.backups.store import BACKUPS_DIR
from tests.integration.control_plane.stack import Stack, wait_for_backup
from tests.integration.control_plane.test_schedule_agent import finished_run
from tests.support.panel import Browser

pytestmark = pytest.mark.docker

LIMIT = 2
HELPER = "helper@example.org"


@pytest.fixture
def stack_environment(stack_environment: dict[str, str]) -> dict[str, str]:
    return {
        **stack_environment,
        "STELLAR_BACKUP_LIMIT": str(LIMIT),
        "STELLAR_SCHEDULE_TICK_SECONDS": "0.5",
    }


async def make_backup(browser: Browser, backups: str, name: str) -> str:
    made = await browser.json("POST", backups, status=202, json={"name": name})
    await wait_for_backup(browser, f"{backups}/{made['id']}")
    return str(made["id"])


async def names(browser: Browser, backups: str) -> list[str]:
    return sorted(b["name"] for b in (await browser.json("GET", backups))["data"])


async def test_a_sub_user_who_may_only_make_backups_cannot_type_or_delete_through_one(
    stack: Stack,
) -> None:
    server_id, owner = await stack.owned_server("owner@example.org")
    backups = f"/api/v1/servers/{server_id}/backups"
    await stack.panel.create_user(HELPER)
    helper = await stack.panel.browser()
    await helper.login(HELPER)
    users = f"/api/v1/servers/{server_id}/users"
    granted = ["backups.read", "backups.create", "schedules.read", "schedules.create"]
    granted += ["schedules.update"]
    subuser = await owner.json(
        "POST", users, status=201, json={"email": HELPER, "permissions": granted}
    )
    await make_backup(owner, backups, "first")

    # Below the limit: a backup, but not one that types into the console.
    typed = await helper.json(
        "POST", backups, status=403, json={"name": "x", "pre_command": "op helper"}
    )
    assert "'console.write' permission" in typed["error"]["message"]
    await make_backup(helper, backups, "helpers")
    assert await names(owner, backups) == ["first", "helpers"]

    # At the limit a new backup would delete the oldest, the owner's: refused, kept.
    refused = await helper.json("POST", backups, status=403, json={"name": "third"})
    message = refused["error"]["message"]
    assert "'backups.delete' permission" in message
    assert f"keeps {LIMIT} backups" in message
    # ... and the same through a schedule the sub-user made.
    schedules = f"/api/v1/servers/{server_id}/schedules"
    nightly = await helper.json(
        "POST",
        schedules,
        status=201,
        json={"name": "nightly", "cron": "0 3 * * *", "tasks": [{"action": "backup"}]},
    )
    await helper.json("POST", f"{schedules}/{nightly['id']}/run", status=202)
    run = await finished_run(helper, f"{schedules}/{nightly['id']}")
    assert run["status"] == "failed", run
    assert "'backups.delete' permission" in str(run["outcomes"][0]["reason"]), run
    assert await names(owner, backups) == ["first", "helpers"]
    archives = stack.agent.data_dir / BACKUPS_DIR / server_id
    assert len({path.name.split(".")[0] for path in archives.iterdir()}) == LIMIT
    denied = await stack.admin.json("GET", "/api/v1/audit?action=auth.denied&per_page=100")
    assert len([e for e in denied["data"] if e["details"].get("path") == backups]) == 2

    # Allowed to delete backups, the sub-user's new backup makes room as the owner's does.
    await owner.json(
        "PATCH",
        f"{users}/{subuser['id']}",
        json={"permissions": [*granted, "backups.delete"]},
    )
    await make_backup(helper, backups, "third")
    assert await names(owner, backups) == ["helpers", "third"]
    await helper.json("POST", f"{schedules}/{nightly['id']}/run", status=202)
    run = await finished_run(helper, f"{schedules}/{nightly['id']}")
    assert run["status"] == "completed", run


async def test_a_backup_the_node_refuses_deletes_no_old_one(stack: Stack) -> None:
    """At the limit, the oldest backup was deleted first, then the node was told: when the
    node refused the new one (another backup of the server still running — a second click,
    a schedule's next run), the old backup was gone and no new one made."""
    server_id, owner = await stack.owned_server("twice@example.org")
    backups = f"/api/v1/servers/{server_id}/backups"
    await make_backup(owner, backups, "first")
    # Enough data that the next backup takes a few seconds.
    with (stack.volume(server_id) / "big.bin").open("wb") as big:
        for _ in range(24):
            big.write(os.urandom(8 * 1024 * 1024))
    running = await owner.json("POST", backups, status=202, json={"name": "second"})

    refused = await owner.json("POST", backups, status=409, json={"name": "third"})
    assert "running" in refused["error"]["message"], refused
    await wait_for_backup(owner, f"{backups}/{running['id']}")
    assert await names(owner, backups) == ["first", "second", "third"]
    archives = stack.agent.data_dir / BACKUPS_DIR / server_id
    assert len(list(archives.glob("*.stbk"))) == 2
