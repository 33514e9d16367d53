"""The hash-chained audit trail: every change is recorded, and tampering is named by row."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from typing import Any

import pytest
from sqlalchemy import delete, select, update

from control_plane.db.engine import session_factory
from control_plane.db.models import AuditEntry, AuditHead
from control_plane.db.session import transaction
from control_plane.keys import ENGINE, SETTINGS
from control_plane.services import audit, domain_events
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


async def tamper_with(panel: Panel, tamper: str) -> None:
    """What an attacker with write access to the database might do to hide rows 4 and 5."""
    async with transaction(session_factory(panel.server.app[ENGINE])) as db:
        if tamper in {"head_deleted", "head_and_newest_deleted", "all_deleted"}:
            await db.execute(delete(AuditHead))
        if tamper == "all_deleted":
            await db.execute(delete(AuditEntry))
        if tamper == "head_and_newest_deleted":
            await db.execute(delete(AuditEntry).where(AuditEntry.id == 5))
        if tamper == "head_rewound":
            third = await db.get(AuditEntry, 3)
            assert third is not None
            await db.execute(update(AuditHead).values(last_id=3, last_hash=third.hash))
        if tamper == "head_hash_edited":
            await db.execute(update(AuditHead).values(last_hash="f" * 64))
        if tamper == "first_deleted":
            await db.execute(delete(AuditEntry).where(AuditEntry.id == 1))
        if tamper == "row_before_the_chain":
            # A forged row with its own correct hash, numbered where the check never looked.
            first = await db.get(AuditEntry, 1)
            assert first is not None
            forged = AuditEntry(
                id=0,
                created_at=first.created_at,
                actor_id=None,
                actor_email="someone@example.org",
                action="user.created",
                target_type="user",
                target_id="forged",
                ip="203.0.113.9",
                user_agent=None,
                details={},
                prev_hash=audit.GENESIS,
            )
            forged.hash = audit.entry_hash(forged)
            db.add(forged)


@pytest.mark.parametrize(
    ("tamper", "expected"),
    [
        ("head_deleted", "audit_head: missing (the rows go up to row 5)"),
        ("head_and_newest_deleted", "audit_head: missing (the rows go up to row 4)"),
        ("all_deleted", "audit_head: missing (no rows)"),
        ("head_rewound", "audit_head: names row 3 as the newest, but the rows go on to row 5"),
        ("head_hash_edited", "row 5: its hash is not the one audit_head keeps for it"),
        ("first_deleted", "row 2: rows 1..1 are missing"),
        ("row_before_the_chain", "row 0: outside the chain (its ids start at 1)"),
    ],
)
async def test_hiding_rows_behind_the_head_or_the_first_row_is_named(
    panel: Panel, tamper: str, expected: str
) -> None:
    await make_history(panel)
    await tamper_with(panel, tamper)
    result = verify_cli(panel)
    assert result.returncode == 1, result.stdout
    assert "audit trail BROKEN" in result.stderr
    assert f"  - {expected}\n" in result.stderr
    # Each message says what was found; nothing here removed rows from the end.
    assert "were removed" not in result.stderr


async def test_removed_newest_rows_are_named_with_the_head_intact(panel: Panel) -> None:
    await make_history(panel)
    async with transaction(session_factory(panel.server.app[ENGINE])) as db:
        await db.execute(delete(AuditEntry).where(AuditEntry.id >= 4))
    result = verify_cli(panel)
    assert result.returncode == 1
    assert result.stderr.splitlines()[1:] == ["  - row 5: the newest rows after row 3 were removed"]


@pytest.mark.parametrize(
    ("tamper", "found"),
    [
        ("head_and_newest_deleted", "audit_head was missing"),
        ("head_rewound", "audit_head named row 3 as the newest, but the rows went on to row 5"),
    ],
)
async def test_audited_actions_go_on_after_the_head_is_lost_and_the_break_stays_named(
    panel: Panel, tamper: str, found: str
) -> None:
    await make_history(panel)
    await tamper_with(panel, tamper)
    last = 4 if tamper == "head_and_newest_deleted" else 5

    admin = await panel.browser()
    await admin.login("root@example.org")  # audited: the first write after the tampering
    await admin.json(
        "POST",
        "/api/v1/users",
        status=201,
        json={"email": "after@example.org", "password": "p" * 8 + "assword1234"},
    )

    entries = (await admin.json("GET", "/api/v1/audit?per_page=100"))["data"]
    newest = [e["action"] for e in reversed(entries)][last:]
    assert newest == ["audit.chain.broken", "user.login.succeeded", "user.created"]
    broken = entries[2]
    assert broken["id"] == last + 1
    assert broken["details"] == {"found": found, "resumed_after_row": last}

    result = verify_cli(panel)
    assert result.returncode == 1
    assert result.stderr.splitlines()[1:] == [
        f"  - row {last + 1}: the chain was found broken here and resumed after row {last}: {found}"
    ]


async def test_writers_that_find_the_head_missing_at_once_record_one_break(panel: Panel) -> None:
    await make_history(panel)
    user = await panel.signed_in("plain@example.org")  # row 6: the sign-in
    await tamper_with(panel, "head_deleted")
    answers = await asyncio.gather(*(user.request("GET", "/api/v1/audit") for _ in range(20)))
    assert [a.status for a in answers] == [403] * 20  # each refusal audited, none a 500
    result = verify_cli(panel)
    assert result.stderr.splitlines() == [
        "audit trail BROKEN (1 problem(s) in 27 rows):",
        "  - row 7: the chain was found broken here and resumed after row 6: "
        "audit_head was missing",
    ]


async def test_every_audited_action_is_published_to_subscribers_in_its_transaction(
    panel: Panel, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[domain_events.DomainEvent] = []

    async def record(db: Any, event: domain_events.DomainEvent) -> None:
        assert db.in_transaction()
        seen.append(event)

    monkeypatch.setattr(domain_events, "subscribers", lambda: (record,))
    entries = await make_history(panel)
    assert [e.action for e in seen] == [e["action"] for e in reversed(entries)]
    created = next(e for e in seen if e.action == "user.created")
    assert created.actor_email == "root@example.org"
    assert created.ip == "127.0.0.1"
    assert created.target_type == "user"
    assert "password" not in str(created.details).replace("[redacted]", "")
