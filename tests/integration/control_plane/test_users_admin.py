"""Administrators manage accounts; nobody else can."""

from __future__ import annotations

from tests.support.panel import Panel


async def test_admin_creates_lists_disables_and_deletes_users(panel: Panel) -> None:
    admin = await panel.signed_in("root@example.org", admin=True)
    created = await admin.json(
        "POST",
        "/api/v1/users",
        status=201,
        json={"email": "New@Example.org", "password": "a long enough password"},
    )
    assert created["email"] == "new@example.org"
    assert created["is_admin"] is False
    page = await admin.json("GET", "/api/v1/users?per_page=1&page=2")
    assert page["meta"] == {"page": 2, "per_page": 1, "total": 2}
    assert len(page["data"]) == 1
    updated = await admin.json("PATCH", f"/api/v1/users/{created['id']}", json={"disabled": True})
    assert updated["disabled"] is True
    await admin.json("DELETE", f"/api/v1/users/{created['id']}", status=204)
    await admin.json("GET", f"/api/v1/users/{created['id']}", status=404)


async def test_duplicate_email_is_a_conflict(panel: Panel) -> None:
    admin = await panel.signed_in("root@example.org", admin=True)
    body = {"email": "dup@example.org", "password": "a long enough password"}
    await admin.json("POST", "/api/v1/users", status=201, json=body)
    conflict = await admin.json("POST", "/api/v1/users", status=409, json=body)
    assert conflict["error"]["code"] == "conflict"


async def test_short_password_is_400_with_field_details(panel: Panel) -> None:
    admin = await panel.signed_in("root@example.org", admin=True)
    body = await admin.json(
        "POST", "/api/v1/users", status=400, json={"email": "a@example.org", "password": "short"}
    )
    assert body["error"]["details"][0]["loc"] == ["password"]


async def test_admin_cannot_lock_themselves_out(panel: Panel) -> None:
    admin = await panel.signed_in("root@example.org", admin=True)
    me = (await admin.json("GET", "/api/v1/auth/session"))["user"]["id"]
    await admin.json("PATCH", f"/api/v1/users/{me}", status=409, json={"disabled": True})
    await admin.json("PATCH", f"/api/v1/users/{me}", status=409, json={"is_admin": False})
    await admin.json("DELETE", f"/api/v1/users/{me}", status=409)


async def test_non_admin_gets_403_and_it_is_audited(panel: Panel) -> None:
    user = await panel.signed_in("plain@example.org")
    await user.json("GET", "/api/v1/users", status=403)
    await user.json(
        "POST", "/api/v1/users", status=403, json={"email": "x@example.org", "password": "p" * 12}
    )
    admin = await panel.signed_in("root@example.org", admin=True)
    denied = await admin.json("GET", "/api/v1/audit?action=auth.forbidden")
    assert denied["meta"]["total"] == 2
    assert denied["data"][0]["actor_email"] == "plain@example.org"


async def test_malformed_ids_and_bodies_are_4xx_not_500(panel: Panel) -> None:
    admin = await panel.signed_in("root@example.org", admin=True)
    await admin.json("GET", "/api/v1/users/not-a-uuid", status=404)
    response = await admin.request(
        "POST", "/api/v1/users", data=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status == 400
    response = await admin.request(
        "POST", "/api/v1/users", data=b"email=x", headers={"Content-Type": "text/plain"}
    )
    assert response.status == 400
    await admin.json("GET", "/api/v1/users?page=0", status=400)
    await admin.json("GET", "/api/v1/no-such-route", status=404)
