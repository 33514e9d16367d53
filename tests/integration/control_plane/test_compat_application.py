"""Contract of ``/api/application`` (Pterodactyl's Application API) for billing modules:
exact status codes, the envelope and the fields WHMCS, Paymenter and Blesta read."""

from __future__ import annotations

import hashlib
import re
import uuid

from sqlalchemy import select, update

from control_plane.db.engine import session_factory
from control_plane.db.models import ApiKey, Server, User
from control_plane.db.session import transaction
from control_plane.keys import ENGINE
from tests.support.compat import MEDIA_TYPE, pterodactyl_key
from tests.support.panel import Panel
from tests.support.world import World

ACCEPT = {"Accept": MEDIA_TYPE}


async def test_keys_have_pterodactyls_form_and_work_only_on_their_own_api(world: World) -> None:
    panel = world.panel
    app = await pterodactyl_key(panel, world.admin, "application")
    client = await pterodactyl_key(panel, world.alice, "client")
    assert app.api_key is not None
    assert client.api_key is not None
    assert re.fullmatch(r"ptla_[A-Za-z0-9]{43}", app.api_key)
    assert re.fullmatch(r"ptlc_[A-Za-z0-9]{43}", client.api_key)
    await app.json("GET", "/api/application/users", headers=ACCEPT)
    refused = await client.json("GET", "/api/application/users", status=403, headers=ACCEPT)
    assert refused["errors"][0] == {
        "code": "AccessDeniedHttpException",
        "status": "403",
        "detail": "this API key is for the client API only",
    }
    await app.json("GET", "/api/client", status=403, headers=ACCEPT)
    # Nor do they open our own API.
    await app.json("GET", "/api/v1/servers", status=403)


async def test_an_application_key_needs_the_admin_scope_and_an_administrator(
    world: World,
) -> None:
    refused = await world.admin.json(
        "POST",
        "/api/v1/account/api-keys",
        status=400,
        json={"name": "x", "scopes": ["read", "write"], "kind": "application"},
    )
    assert "admin scope" in str(refused)
    await world.alice.json(
        "POST",
        "/api/v1/account/api-keys",
        status=403,
        json={"name": "x", "scopes": ["read", "write", "admin"], "kind": "application"},
    )


async def test_a_wrong_or_missing_key_is_401_in_pterodactyls_envelope(panel: Panel) -> None:
    anonymous = await panel.browser()
    body = await anonymous.json("GET", "/api/application/users", status=401)
    assert body["errors"][0]["code"] == "AuthenticationException"
    assert body["errors"][0]["status"] == "401"
    anonymous.api_key = "ptla_" + "a" * 43
    await anonymous.json("GET", "/api/application/users", status=401)
    anonymous.api_key = None
    missing = await anonymous.json("GET", "/api/application/no-such-thing", status=404)
    assert missing["errors"][0]["code"] == "NotFoundHttpException"


async def test_users_list_filter_get_create_update_delete(world: World) -> None:
    app = await pterodactyl_key(world.panel, world.admin, "application")
    listed = await app.json("GET", "/api/application/users?per_page=2")
    assert listed["object"] == "list"
    pagination = listed["meta"]["pagination"]
    assert pagination["total"] == 5
    assert pagination["count"] == 2
    assert pagination["per_page"] == 2
    assert pagination["total_pages"] == 3
    assert pagination["links"]["next"].endswith("page=2")
    assert "previous" not in pagination["links"]
    assert listed["data"][0]["object"] == "user"
    found = await app.json("GET", "/api/application/users?filter[email]=alice@example.org")
    assert [u["attributes"]["email"] for u in found["data"]] == ["alice@example.org"]
    alice = found["data"][0]["attributes"]
    assert isinstance(alice["id"], int)
    assert alice["uuid"] == world.ids["alice_user"]
    created = await app.json(
        "POST",
        "/api/application/users",
        status=201,
        json={
            "email": "Customer@Example.org",
            "username": "customer1",
            "first_name": "Cus",
            "last_name": "Tomer",
            "external_id": "whmcs-17",
        },
    )
    assert created["object"] == "user"
    user = created["attributes"]
    assert (user["email"], user["first_name"], user["external_id"]) == (
        "customer@example.org",
        "Cus",
        "whmcs-17",
    )
    again = await app.json("GET", "/api/application/users/external/whmcs-17")
    assert again["attributes"]["id"] == user["id"]
    by_id = await app.json("GET", f"/api/application/users/{user['id']}")
    assert by_id["attributes"]["uuid"] == user["uuid"]
    duplicate = await app.json(
        "POST",
        "/api/application/users",
        status=422,
        json={
            "email": "customer@example.org",
            "username": "c",
            "first_name": "a",
            "last_name": "b",
        },
    )
    assert duplicate["errors"][0]["meta"] == {"source_field": "email", "rule": "unique"}
    invalid = await app.json(
        "POST", "/api/application/users", status=422, json={"email": "x@example.org"}
    )
    fields = {e["meta"]["source_field"]: e["meta"]["rule"] for e in invalid["errors"]}
    assert fields == {"username": "required", "first_name": "required", "last_name": "required"}
    assert {e["code"] for e in invalid["errors"]} == {"ValidationException"}
    updated = await app.json(
        "PATCH",
        f"/api/application/users/{user['id']}",
        json={
            "email": "customer@example.org",
            "username": "customer1",
            "first_name": "Cus",
            "last_name": "Tomer",
            "password": "a much better password 1",
        },
    )
    assert updated["object"] == "user"
    customer = await world.panel.browser()
    await customer.login("customer@example.org", "a much better password 1")
    await app.json("DELETE", f"/api/application/users/{user['id']}", status=204)
    await app.json("GET", f"/api/application/users/{user['id']}", status=404)
    # Ids are spelled one way: no leading zero, no UUID where a number goes.
    await app.json("GET", f"/api/application/users/0{alice['id']}", status=404)
    await app.json("GET", f"/api/application/users/{alice['uuid']}", status=404)


async def test_a_user_who_owns_servers_is_not_deleted(world: World) -> None:
    app = await pterodactyl_key(world.panel, world.admin, "application")
    alice = await app.json("GET", "/api/application/users?filter[email]=alice@")
    number = alice["data"][0]["attributes"]["id"]
    refused = await app.json("DELETE", f"/api/application/users/{number}", status=400)
    assert refused["errors"][0]["code"] == "DisplayException"


async def test_locations_nodes_deployable_and_allocations(world: World) -> None:
    app = await pterodactyl_key(world.panel, world.admin, "application")
    locations = await app.json("GET", "/api/application/locations")
    assert [loc["attributes"]["short"] for loc in locations["data"]] == ["eu1"]
    location = locations["data"][0]["attributes"]
    await app.json("GET", f"/api/application/locations/{location['id']}")
    nodes = await app.json("GET", "/api/application/nodes?include=allocations")
    node = nodes["data"][0]["attributes"]
    assert node["name"] == "dead-node"
    assert node["allocated_resources"] == {"memory": 1024, "disk": 2048}
    allocations = node["relationships"]["allocations"]
    assert allocations["object"] == "list"
    first = allocations["data"][0]
    assert first["object"] == "allocation"
    assert {"id", "ip", "port", "assigned", "alias", "notes"} <= set(first["attributes"])
    assert sum(a["attributes"]["assigned"] for a in allocations["data"]) == 2
    one = await app.json("GET", f"/api/application/nodes/{node['id']}")
    assert one["attributes"]["uuid"] == world.ids["node"]
    listed = await app.json("GET", f"/api/application/nodes/{node['id']}/allocations")
    assert listed["meta"]["pagination"]["total"] == 10
    # The world's node has no location; after it gets one, deployable finds it there.
    await world.admin.json(
        "PATCH", f"/api/v1/nodes/{world.ids['node']}", json={"location_id": world.ids["location"]}
    )
    deployable = await app.json(
        "GET",
        f"/api/application/nodes/deployable?memory=512&disk=1024&location_ids[]={location['id']}"
        "&include=allocations",
    )
    assert [n["attributes"]["id"] for n in deployable["data"]] == [node["id"]]
    assert deployable["data"][0]["attributes"]["relationships"]["allocations"]["data"]
    elsewhere = await app.json(
        "GET", "/api/application/nodes/deployable?memory=512&disk=1024&location_ids[]=999"
    )
    assert elsewhere["data"] == []


async def test_nests_and_eggs_with_variables(world: World) -> None:
    app = await pterodactyl_key(world.panel, world.admin, "application")
    nests = await app.json("GET", "/api/application/nests")
    assert [n["attributes"]["name"] for n in nests["data"]] == ["Imported"]
    nest = nests["data"][0]["attributes"]["id"]
    one = await app.json("GET", f"/api/application/nests/{nest}")
    assert one == {"object": "nest", "attributes": nests["data"][0]["attributes"]}
    eggs = await app.json("GET", f"/api/application/nests/{nest}/eggs")
    egg = eggs["data"][0]["attributes"]
    assert egg["name"] == "fake game"
    assert egg["docker_image"] == "stellar-test/fake-game:latest"
    detail = await app.json(
        "GET", f"/api/application/nests/{nest}/eggs/{egg['id']}?include=variables"
    )
    variables = detail["attributes"]["relationships"]["variables"]["data"]
    assert [v["attributes"]["env_variable"] for v in variables] == ["MOTD", "SECRET_SEED"]
    assert detail["attributes"]["startup"].startswith("/usr/local/bin/fake-game")
    await app.json("GET", f"/api/application/nests/2/eggs/{egg['id']}", status=404)


async def test_keys_are_stored_hashed_and_follow_their_owner(world: World) -> None:
    app = await pterodactyl_key(world.panel, world.admin, "application")
    assert app.api_key is not None
    identifier, secret = app.api_key[:16], app.api_key[16:]
    async with transaction(session_factory(world.panel.server.app[ENGINE])) as db:
        row = await db.scalar(select(ApiKey).where(ApiKey.prefix == identifier))
        assert row is not None
        assert row.kind == "application"
        assert secret not in row.secret_hash
        assert row.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    # A wrong secret with the right identifier is no key at all.
    forged = await world.panel.browser()
    forged.api_key = identifier + "A" * 32
    await forged.json("GET", "/api/application/users", status=401)
    # Read and admin, no write: it looks, it does not act.
    reader = await pterodactyl_key(world.panel, world.admin, "application", ["read", "admin"])
    await reader.json("GET", "/api/application/users")
    refused = await reader.json("DELETE", "/api/application/users/1", status=403)
    assert "write" in refused["errors"][0]["detail"]
    # An administrator demoted: their application key no longer administers anything.
    async with transaction(session_factory(world.panel.server.app[ENGINE])) as db:
        await db.execute(
            update(User).where(User.email == "admin@example.org").values(is_admin=False)
        )
    await app.json("GET", "/api/application/users", status=403)


async def test_ids_are_stable_unique_and_never_reused(world: World) -> None:
    """A clash of UUID prefixes gets another identifier; a deleted row's number is not
    given again."""
    factory = session_factory(world.panel.server.app[ENGINE])
    alice_server = uuid.UUID(world.ids["alice_server"])
    clash = uuid.UUID(alice_server.hex[:8] + uuid.uuid4().hex[8:])
    async with transaction(factory) as db:
        original = await db.get(Server, alice_server)
        assert original is not None
        twin = Server(
            id=clash,
            name="twin",
            owner_id=original.owner_id,
            node_id=original.node_id,
            blueprint_id=original.blueprint_id,
            image=original.image,
            memory_mib=64,
            cpu_percent=10,
            disk_mib=64,
        )
        db.add(twin)
        await db.flush()
        assert original.identifier == alice_server.hex[:8]
        assert twin.identifier is not None
        assert twin.identifier != original.identifier
        assert twin.compat_id is not None
        assert original.compat_id is not None
        assert twin.compat_id > original.compat_id
        last = twin.compat_id
        await db.delete(twin)
    app = await pterodactyl_key(world.panel, world.admin, "application")
    created = await app.json(
        "POST",
        "/api/application/users",
        status=201,
        json={"email": "n@example.org", "username": "n", "first_name": "N", "last_name": "N"},
    )
    async with transaction(factory) as db:
        again = Server(
            name="again",
            owner_id=original.owner_id,
            node_id=original.node_id,
            blueprint_id=original.blueprint_id,
            image=original.image,
            memory_mib=64,
            cpu_percent=10,
            disk_mib=64,
        )
        db.add(again)
        await db.flush()
        assert again.compat_id == last + 1
        await db.delete(again)
    assert created["attributes"]["id"] == 6  # five users in the world before
