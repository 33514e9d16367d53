"""The hash-chained audit trail: every change is recorded, and tampering is named by row."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest
from sqlalchemy import delete, select, update

from control_plane.db.engine import session_factory
from control_plane.db.models import AuditEntry
from control_plane.db.session import transaction
from control_plane.keys import ENGINE, SETTINGS
from tests.support.panel import Panel


def verify_cli(panel: Panel) -> subprocess.CompletedProcess[str]:
    settings = panel.server.app[SETTINGS]
    env = {
        **os.environ,
        "STELLAR_DATABASE_URL": settings.database_url or "",
        "STELLAR_AUTH_SECRET": settings.auth_secret or "",
    }
    return subprocess.run(
        [sys.executable, "-m", "control_plane", "audit", "verify"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def make_history(panel: Panel) -> list[dict[str, Any]]:
    admin = await panel.signed_in("root@example.org", admin=True)
    for n in range(3):
        await admin.json(
            "POST",
            "/api/v1/users",
            status=201,
            json={"email": f"user{n}@example.org", "password": "p" * 8 + "assword1234"},
        )
    await (await panel.browser()).request(
        "POST",
        "/api/v1/auth/login",
        json={"email": "user0@example.org", "password": "wrong password!"},
    )
    page = await admin.json("GET", "/api/v1/audit?per_page=100")
    return list(page["data"])


async def test_actions_are_recorded_with_actor_target_ip_and_no_secrets(panel: Panel) -> None:
    entries = await make_history(panel)
    actions = [e["action"] for e in reversed(entries)]
    assert actions == [
        "user.login.succeeded",
        "user.created",
        "user.created",
        "user.created",
        "user.login.failed",
    ]
    created = next(e for e in entries if e["action"] == "user.created")
    assert created["actor_email"] == "root@example.org"
    assert created["target_type"] == "user"
    assert created["ip"] == "127.0.0.1"
    assert "password" not in str(created["details"]).replace("[redacted]", "")
    failed = entries[0]
    assert failed["actor_id"] is None
    assert failed["details"]["method"] == "password"


async def test_admin_can_filter_the_trail(panel: Panel) -> None:
    await make_history(panel)
    admin = await panel.browser()
    await admin.login("root@example.org")
    only_created = await admin.json("GET", "/api/v1/audit?action=user.created")
    assert only_created["meta"]["total"] == 3
    logins = await admin.json("GET", "/api/v1/audit?action=user.login.&per_page=1")
    assert logins["meta"]["total"] == 3  # two successes, one failure
    assert len(logins["data"]) == 1


async def test_non_admin_cannot_read_the_trail(panel: Panel) -> None:
    user = await panel.signed_in("plain@example.org")
    await user.json("GET", "/api/v1/audit", status=403)


async def test_intact_chain_verifies(panel: Panel) -> None:
    await make_history(panel)
    result = verify_cli(panel)
    assert result.returncode == 0, result.stderr
    assert "audit trail intact: 5 rows" in result.stdout


@pytest.mark.parametrize("tamper", ["edit", "delete_middle", "delete_newest", "rehash_edit"])
async def test_tampering_is_detected_and_the_row_named(panel: Panel, tamper: str) -> None:
    await make_history(panel)
    async with transaction(session_factory(panel.server.app[ENGINE])) as db:
        if tamper == "edit":
            await db.execute(
                update(AuditEntry).where(AuditEntry.id == 3).values(actor_email="x@y.z")
            )
        elif tamper == "delete_middle":
            await db.execute(delete(AuditEntry).where(AuditEntry.id == 3))
        elif tamper == "delete_newest":
            await db.execute(delete(AuditEntry).where(AuditEntry.id == 5))
        else:
            # A careful forger recomputes the edited row's own hash: the next row still breaks.
            from control_plane.services.audit import entry_hash

            row = await db.scalar(select(AuditEntry).where(AuditEntry.id == 3))
            assert row is not None
            row.action = "user.login.succeeded"
            row.hash = entry_hash(row)
    result = verify_cli(panel)
    assert result.returncode == 1
    assert "audit trail BROKEN" in result.stderr
    expected_row = {"edit": 3, "delete_middle": 4, "delete_newest": 5, "rehash_edit": 4}[tamper]
    assert f"row {expected_row}:" in result.stderr
