"""What a billing system or a leaked application key could do with the Pterodactyl
application API that it must not: take over the key's own account, store an external id its
lookup cannot reach, make "unlimited" swap, or get a 500 for a duplicate sent at once."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.support.compat import pterodactyl_key
from tests.support.world import World

USERS = "/api/application/users"


async def user_number(app: Any, email: str) -> int:
    found = await app.json("GET", f"{USERS}?filter[email]={email}")
    number: int = found["data"][0]["attributes"]["id"]
    return number


async def test_a_key_cannot_change_its_own_owners_address_or_password(world: World) -> None:
    app = await pterodactyl_key(world.panel, world.admin, "application")
    me = await user_number(app, "admin@example.org")
    for change in ({"email": "attacker@evil.example"}, {"password": "attacker chosen 12345"}):
        refused = await app.json("PATCH", f"{USERS}/{me}", status=409, json=change)
        assert "on your account page" in refused["errors"][0]["detail"]
    # The owner is still signed in, under the same address.
    assert (await world.admin.json("GET", "/api/v1/auth/session"))["user"]["email"] == (
        "admin@example.org"
    )
    # Another user's are the administrator's to change, as in Pterodactyl.
    bob = await user_number(app, "bob@example.org")
    changed = await app.json("PATCH", f"{USERS}/{bob}", json={"email": "robert@example.org"})
    assert changed["attributes"]["email"] == "robert@example.org"


async def test_every_external_id_accepted_can_be_looked_up(world: World) -> None:
    app = await pterodactyl_key(world.panel, world.admin, "application")
    user = {"username": "c", "first_name": "C", "last_name": "C"}
    made = await app.json(
        "POST",
        USERS,
        status=201,
        json={**user, "email": "c@example.org", "external_id": "WHMCS client 17"},
    )
    found = await app.json("GET", f"{USERS}/external/WHMCS%20client%2017")
    assert found["attributes"]["id"] == made["attributes"]["id"]
    refused = await app.json(
        "POST",
        USERS,
        status=422,
        json={**user, "email": "d@example.org", "external_id": "clients/17"},
    )
    assert refused["errors"][0]["meta"]["source_field"] == "external_id"


async def test_unlimited_swap_is_refused_not_made_none(world: World) -> None:
    app = await pterodactyl_key(world.panel, world.admin, "application")
    limits = {"memory": 512, "swap": -1, "disk": 1024, "io": 500, "cpu": 100}
    refused = await app.json(
        "POST",
        "/api/application/servers",
        status=422,
        json={
            "name": "x",
            "user": 1,
            "egg": 1,
            "limits": limits,
            "feature_limits": {"databases": 0, "allocations": 1, "backups": 1},
            "allocation": {"default": 1},
        },
    )
    assert "limits.swap" in {e["meta"]["source_field"] for e in refused["errors"]}


async def test_the_same_external_id_sent_twice_at_once_is_one_user_and_no_500(
    world: World,
) -> None:
    app = await pterodactyl_key(world.panel, world.admin, "application")
    bodies = [
        {
            "username": f"u{n}",
            "first_name": "U",
            "last_name": "U",
            "email": f"u{n}@example.org",
            "external_id": "whmcs-1",
        }
        for n in range(4)
    ]
    answers = await asyncio.gather(*(app.request("POST", USERS, json=b) for b in bodies))
    statuses = sorted(answer.status for answer in answers)
    assert statuses.count(201) == 1, statuses
    assert set(statuses) <= {201, 409, 422}, statuses
    found = await app.json("GET", f"{USERS}?filter[external_id]=whmcs-1")
    assert len(found["data"]) == 1
