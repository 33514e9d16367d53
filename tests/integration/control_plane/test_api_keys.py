"""API keys: shown once, hashed, scoped, IP-limited, expiring, revocable; no CSRF needed."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from control_plane.db.engine import session_factory
from control_plane.db.models import ApiKey
from control_plane.db.session import transaction
from control_plane.keys import ENGINE
from tests.support.panel import Browser, Panel


async def new_key(browser: Browser, **fields: object) -> dict[str, object]:
    body = {"name": "bot", "scopes": ["read", "write"], **fields}
    return dict(await browser.json("POST", "/api/v1/account/api-keys", status=201, json=body))


async def bot(panel: Panel, key: object) -> Browser:
    browser = await panel.browser()
    browser.api_key = str(key)
    return browser


async def test_key_is_shown_once_and_stored_hashed(panel: Panel) -> None:
    owner = await panel.signed_in("owner@example.org")
    created = await new_key(owner)
    key = str(created["key"])
    assert key.startswith("stl_")
    listed = (await owner.json("GET", "/api/v1/account/api-keys"))["data"]
    assert [k["prefix"] for k in listed] == [created["prefix"]]
    assert "key" not in listed[0]
    async with transaction(session_factory(panel.server.app[ENGINE])) as db:
        stored = await db.scalar(select(ApiKey))
    assert stored is not None
    assert key.split("_")[2] not in (stored.secret_hash, stored.prefix)


async def test_key_authenticates_without_csrf_and_records_last_use(panel: Panel) -> None:
    owner = await panel.signed_in("owner@example.org")
    client = await bot(panel, (await new_key(owner))["key"])
    me = await client.json("GET", "/api/v1/auth/session")
    assert me["via"] == "api_key"
    assert me["csrf_token"] is None
    # An unsafe request with a key needs no CSRF token (the key is not ambient authority).
    await client.json(
        "POST",
        "/api/v1/auth/password",
        status=204,
        json={"current_password": "correct horse battery staple", "new_password": "x" * 16},
    )
    listed = await owner.request("GET", "/api/v1/account/api-keys")
    assert listed.status == 401  # the password change ended the owner's browser session
    relogin = await panel.browser()
    await relogin.login("owner@example.org", "x" * 16)
    [key] = (await relogin.json("GET", "/api/v1/account/api-keys"))["data"]
    assert key["last_used_at"] is not None


async def test_read_only_key_cannot_change_anything(panel: Panel) -> None:
    owner = await panel.signed_in("owner@example.org")
    client = await bot(panel, (await new_key(owner, scopes=["read"]))["key"])
    await client.json("GET", "/api/v1/auth/sessions")
    body = await client.json(
        "POST",
        "/api/v1/auth/password",
        status=403,
        json={"current_password": "correct horse battery staple", "new_password": "x" * 16},
    )
    assert "'write' scope" in body["error"]["message"]


async def test_admin_scope_only_for_admins_and_needed_for_admin_routes(panel: Panel) -> None:
    user = await panel.signed_in("user@example.org")
    await user.json(
        "POST",
        "/api/v1/account/api-keys",
        status=403,
        json={"name": "x", "scopes": ["read", "admin"]},
    )
    admin = await panel.signed_in("root@example.org", admin=True)
    plain = await bot(panel, (await new_key(admin))["key"])
    await plain.json("GET", "/api/v1/users", status=403)
    full = await bot(panel, (await new_key(admin, scopes=["read", "admin"]))["key"])
    await full.json("GET", "/api/v1/users")


async def test_keys_cannot_mint_keys(panel: Panel) -> None:
    owner = await panel.signed_in("owner@example.org")
    client = await bot(panel, (await new_key(owner))["key"])
    await client.json(
        "POST", "/api/v1/account/api-keys", status=403, json={"name": "y", "scopes": ["read"]}
    )


async def test_ip_allow_list_is_enforced(panel: Panel) -> None:
    owner = await panel.signed_in("owner@example.org")
    elsewhere = await bot(panel, (await new_key(owner, allowed_ips=["198.18.0.0/24"]))["key"])
    await elsewhere.json("GET", "/api/v1/auth/session", status=401)
    here = await bot(panel, (await new_key(owner, name="b2", allowed_ips=["127.0.0.1/32"]))["key"])
    await here.json("GET", "/api/v1/auth/session")


async def test_expired_revoked_and_forged_keys_are_refused(panel: Panel) -> None:
    owner = await panel.signed_in("owner@example.org")
    created = await new_key(owner)
    client = await bot(panel, created["key"])
    await client.json("GET", "/api/v1/auth/session")
    forged = await bot(panel, str(created["key"])[:-4] + "AAAA")
    await forged.json("GET", "/api/v1/auth/session", status=401)
    await owner.json("DELETE", f"/api/v1/account/api-keys/{created['id']}", status=204)
    await client.json("GET", "/api/v1/auth/session", status=401)

    soon = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30)
    expiring = await new_key(owner, name="exp", expires_at=soon.isoformat())
    async with transaction(session_factory(panel.server.app[ENGINE])) as db:
        row = await db.get(ApiKey, __import__("uuid").UUID(str(expiring["id"])))
        assert row is not None
        row.expires_at = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    await (await bot(panel, expiring["key"])).json("GET", "/api/v1/auth/session", status=401)


async def test_another_users_key_cannot_be_revoked(panel: Panel) -> None:
    owner = await panel.signed_in("owner@example.org")
    created = await new_key(owner)
    thief = await panel.signed_in("thief@example.org")
    await thief.json("DELETE", f"/api/v1/account/api-keys/{created['id']}", status=404)
    await (await bot(panel, created["key"])).json("GET", "/api/v1/auth/session")


async def test_invalid_key_requests_are_400_with_field_details(panel: Panel) -> None:
    owner = await panel.signed_in("owner@example.org")
    body = await owner.json(
        "POST",
        "/api/v1/account/api-keys",
        status=400,
        json={"name": "", "scopes": ["root"], "allowed_ips": ["nope"], "extra": 1},
    )
    fields = {tuple(d["loc"]) for d in body["error"]["details"]}
    assert ("name",) in fields
    assert ("extra",) in fields
    assert any(f[0] == "scopes" for f in fields)
    assert any(f[0] == "allowed_ips" for f in fields)
