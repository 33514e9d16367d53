"""Two administrators removing each other at the same moment (demote, disable, delete: each
allowed alone, since neither acts on themselves) must not leave the panel with no active
administrator: one of the two is refused. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import func, select

from control_plane.db.engine import session_factory
from control_plane.db.models import User
from control_plane.db.session import transaction
from control_plane.keys import ENGINE
from tests.support.compat import pterodactyl_key
from tests.support.held import Held, requests_held
from tests.support.panel import Browser, Panel

ACTIONS: dict[str, tuple[str, dict[str, Any] | None]] = {
    "demote": ("PATCH", {"is_admin": False}),
    "disable": ("PATCH", {"disabled": True}),
    "delete": ("DELETE", None),
}


async def active_admins(panel: Panel) -> int:
    async with transaction(session_factory(panel.server.app[ENGINE])) as db:
        count = await db.scalar(
            select(func.count())
            .select_from(User)
            .where(User.is_admin.is_(True), User.disabled.is_(False))
        )
        return int(count or 0)


async def admin(panel: Panel, email: str) -> tuple[Browser, str]:
    browser = await panel.signed_in(email, admin=True)
    return browser, (await browser.json("GET", "/api/v1/auth/session"))["user"]["id"]


def writers_held(database_url: str) -> Held:
    """Hold what a removal of an administrator must wait for (PostgreSQL: the active
    administrators' rows, ``FOR NO KEY UPDATE``) until the block ends, so that removals sent
    meanwhile all start before any of them decides."""
    return requests_held(database_url, "SELECT id FROM users WHERE is_admin FOR NO KEY UPDATE")


@pytest.mark.parametrize("first", sorted(ACTIONS))
@pytest.mark.parametrize("second", sorted(ACTIONS))
async def test_two_administrators_removing_each_other_leave_one(
    panel: Panel, database_url: str, first: str, second: str
) -> None:
    ann, ann_id = await admin(panel, "ann@example.org")
    bob, bob_id = await admin(panel, "bob@example.org")
    (method_a, body_a), (method_b, body_b) = ACTIONS[first], ACTIONS[second]
    async with writers_held(database_url) as held_up:
        calls = [
            asyncio.create_task(ann.request(method_a, f"/api/v1/users/{bob_id}", json=body_a)),
            asyncio.create_task(bob.request(method_b, f"/api/v1/users/{ann_id}", json=body_b)),
        ]
        await held_up(2)
    answers = await asyncio.gather(*calls)
    # Both were let in as administrators and waited; then one goes through and the other,
    # counting after it, is refused.
    statuses = sorted(answer.status for answer in answers)
    assert statuses[0] in (200, 204), statuses
    assert statuses[1] == 409, statuses
    refused = next(answer for answer in answers if answer.status == 409)
    assert "the only active administrator" in (await refused.json())["error"]["message"]
    assert await active_admins(panel) == 1


async def test_the_count_allows_removing_one_of_several(panel: Panel) -> None:
    ann, _ann_id = await admin(panel, "ann@example.org")
    _bob, bob_id = await admin(panel, "bob@example.org")
    await ann.json("PATCH", f"/api/v1/users/{bob_id}", json={"is_admin": False})
    await ann.json("PATCH", f"/api/v1/users/{bob_id}", json={"is_admin": True})
    await ann.json("PATCH", f"/api/v1/users/{bob_id}", json={"disabled": True})
    await ann.json("DELETE", f"/api/v1/users/{bob_id}", status=204)
    assert await active_admins(panel) == 1


@pytest.mark.parametrize("action", ["demote", "delete"])
async def test_the_same_through_the_pterodactyl_application_api(panel: Panel, action: str) -> None:
    """Billing systems and bots remove administrators through the compatible API: the same
    decision answers them (Pterodactyl's 400 for a refused deletion, as for a user who still
    owns servers)."""
    keys = []
    for email in ("ann@example.org", "bob@example.org"):
        owner, _id = await admin(panel, email)
        keys.append(await pterodactyl_key(panel, owner, "application"))
    listed = await keys[0].json("GET", "/api/application/users?per_page=10")
    ids = {u["attributes"]["email"]: u["attributes"]["id"] for u in listed["data"]}
    paths = [
        f"/api/application/users/{ids[email]}" for email in ("bob@example.org", "ann@example.org")
    ]
    if action == "demote":
        calls = [
            key.request("PATCH", path, json={"root_admin": False})
            for key, path in zip(keys, paths, strict=True)
        ]
    else:
        calls = [key.request("DELETE", path) for key, path in zip(keys, paths, strict=True)]
    answers = await asyncio.gather(*calls)
    statuses = sorted(answer.status for answer in answers)
    assert statuses[0] in (200, 204), statuses
    assert statuses[1] in (400, 401, 403, 409), statuses
    assert await active_admins(panel) == 1
