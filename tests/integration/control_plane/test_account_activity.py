"""``GET /api/v1/account/activity``: a user reads what they did, and nothing anyone else did
(even to them)."""

from __future__ import annotations

from tests.support.panel import Panel


async def test_a_user_reads_their_own_actions_only(panel: Panel) -> None:
    admin = await panel.signed_in("admin@example.org", admin=True)
    alice = await panel.signed_in("alice@example.org")
    bob = await panel.signed_in("bob@example.org")
    await alice.json("PATCH", "/api/v1/account/settings", json={"timezone": "Europe/Berlin"})
    await bob.json("PATCH", "/api/v1/account/settings", json={"timezone": "Asia/Tokyo"})
    alice_id = (await alice.json("GET", "/api/v1/auth/session"))["user"]["id"]
    # Done to alice by someone else: the administrator's action, and a stranger's wrong
    # password for her address. Neither is hers.
    await admin.json("PATCH", f"/api/v1/users/{alice_id}", json={"disabled": False})
    stranger = await panel.browser()
    refused = await stranger.request(
        "POST", "/api/v1/auth/login", json={"email": "alice@example.org", "password": "nope"}
    )
    assert refused.status == 401

    mine = await alice.json("GET", "/api/v1/account/activity")
    actions = [entry["action"] for entry in mine["data"]]
    # Newest first: her settings change after her sign-in.
    assert actions == ["user.settings.updated", "user.login.succeeded"]
    assert mine["data"][0]["details"] == {"timezone": "Europe/Berlin"}
    assert mine["meta"] == {"page": 1, "per_page": 50, "total": 2}
    assert "actor_id" not in mine["data"][0]

    bobs = await bob.json("GET", "/api/v1/account/activity")
    assert bobs["data"][0]["details"] == {"timezone": "Asia/Tokyo"}
    assert all(entry["action"] != "user.updated" for entry in bobs["data"])
    admins = await admin.json("GET", "/api/v1/account/activity")
    assert any(entry["target_id"] == alice_id for entry in admins["data"])

    second = await alice.json("GET", "/api/v1/account/activity?per_page=1&page=2")
    assert [entry["action"] for entry in second["data"]] == ["user.login.succeeded"]
    assert second["meta"]["total"] == 2


async def test_strangers_and_nonsense_pages_are_refused(panel: Panel) -> None:
    stranger = await panel.browser()
    anonymous = await stranger.request("GET", "/api/v1/account/activity")
    assert anonymous.status == 401
    alice = await panel.signed_in("alice@example.org")
    someone = "actor_id=00000000-0000-0000-0000-000000000000"
    for query in ("page=0", "per_page=101", "page=x", someone):
        response = await alice.request("GET", f"/api/v1/account/activity?{query}")
        assert response.status == 400, query
