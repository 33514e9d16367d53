"""What the admin pages needed of the API: search users, reset a user's second factor,
rename a location, and a clear refusal to delete a location that nodes use."""

from __future__ import annotations

import uuid

import pytest
from pytest_aiohttp import AiohttpClient, AiohttpServer
from sqlalchemy.ext.asyncio import AsyncEngine

from control_plane.db.engine import session_factory
from control_plane.db.models import Node
from control_plane.db.session import transaction
from control_plane.keys import ENGINE
from tests.integration.control_plane.mfa_support import enrol, mfa_panel, start_login
from tests.support.clocks import WallClock
from tests.support.panel import Panel


@pytest.fixture
async def mfa(
    engine: AsyncEngine,
    database_url: str,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
    wall_clock: WallClock,
) -> Panel:
    return await mfa_panel(database_url, aiohttp_server, aiohttp_client, wall_clock)


async def test_users_are_searched_by_any_part_of_their_address(panel: Panel) -> None:
    admin = await panel.signed_in("root@example.org", admin=True)
    for email in ("ann@games.example", "bert@games.example", "cy@other.example", "x_y@a.example"):
        await panel.create_user(email)
    found = await admin.json("GET", "/api/v1/users?search=GAMES&per_page=1")
    assert found["meta"]["total"] == 2
    assert [u["email"] for u in found["data"]] == ["ann@games.example"]
    # LIKE's wildcards are text here: "_" matches only an underscore.
    underscore = await admin.json("GET", "/api/v1/users?search=x_")
    assert [u["email"] for u in underscore["data"]] == ["x_y@a.example"]
    percent = await admin.json("GET", "/api/v1/users?search=%25")
    assert percent["meta"]["total"] == 0


async def test_an_admin_resets_a_users_second_factor_and_it_is_audited(
    mfa: Panel, wall_clock: WallClock
) -> None:
    admin = await mfa.signed_in("root@example.org", admin=True)
    user = await mfa.signed_in("lost.phone@example.org")
    user_id = (await user.json("GET", "/api/v1/auth/session"))["user"]["id"]
    await enrol(user, wall_clock)
    fresh = await mfa.browser()
    await start_login(fresh, "lost.phone@example.org")

    await admin.json("POST", f"/api/v1/users/{user_id}/2fa/reset", status=204)
    # The password alone signs in now.
    again = await mfa.browser()
    signed_in = await again.login("lost.phone@example.org")
    assert "mfa_required" not in signed_in
    assert signed_in["mfa_pending"] is False
    assert (await again.json("GET", "/api/v1/account/2fa"))["enabled"] is False
    # Nothing left to reset: a clear conflict, not a silent success.
    conflict = await admin.json("POST", f"/api/v1/users/{user_id}/2fa/reset", status=409)
    assert "off for this user" in conflict["error"]["message"]
    entries = await admin.json("GET", "/api/v1/audit?action=user.2fa.reset")
    assert entries["meta"]["total"] == 1
    assert entries["data"][0]["target_id"] == user_id


async def test_resetting_a_second_factor_is_for_admins_and_not_of_ones_own(
    mfa: Panel, wall_clock: WallClock
) -> None:
    admin = await mfa.signed_in("root@example.org", admin=True)
    admin_id = (await admin.json("GET", "/api/v1/auth/session"))["user"]["id"]
    await enrol(admin, wall_clock)
    own = await admin.json("POST", f"/api/v1/users/{admin_id}/2fa/reset", status=409)
    assert "account page" in own["error"]["message"]
    plain = await mfa.signed_in("plain@example.org")
    await plain.json("POST", f"/api/v1/users/{admin_id}/2fa/reset", status=403)
    await admin.json(
        "POST", "/api/v1/users/00000000-0000-4000-8000-000000000000/2fa/reset", status=404
    )


async def test_a_location_is_renamed_and_a_used_one_is_not_deleted(panel: Panel) -> None:
    admin = await panel.signed_in("root@example.org", admin=True)
    first = await admin.json("POST", "/api/v1/locations", status=201, json={"code": "eu1"})
    await admin.json("POST", "/api/v1/locations", status=201, json={"code": "us1"})
    renamed = await admin.json(
        "PATCH",
        f"/api/v1/locations/{first['id']}",
        json={"code": "eu-west", "description": "Frankfurt"},
    )
    assert (renamed["code"], renamed["description"]) == ("eu-west", "Frankfurt")
    taken = await admin.json(
        "PATCH", f"/api/v1/locations/{first['id']}", status=409, json={"code": "us1"}
    )
    assert "exists already" in taken["error"]["message"]
    bad = await admin.json(
        "PATCH", f"/api/v1/locations/{first['id']}", status=400, json={"code": "Not Valid"}
    )
    assert bad["error"]["details"][0]["loc"] == ["code"]
    async with transaction(session_factory(panel.server.app[ENGINE])) as db:
        db.add(
            Node(name="<b>node</b>", url="http://127.0.0.1:9", location_id=uuid.UUID(first["id"]))
        )
    in_use = await admin.json("DELETE", f"/api/v1/locations/{first['id']}", status=409)
    assert in_use["error"]["message"] == (
        "the location still has nodes (<b>node</b>); move or delete them first"
    )
    entries = await admin.json("GET", "/api/v1/audit?action=location.updated")
    assert entries["data"][0]["details"] == {"code": "eu-west", "description": "Frankfurt"}
