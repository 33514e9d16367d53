"""The admin pages for blueprints, servers and the audit trail, over HTTP (the browser tests
are in test_web_admin_catalog.py): administrators get them, everyone else is refused, user
strings are escaped, and the audit page's filters reach the trail."""

from __future__ import annotations

import re
import uuid

from tests.support.world import World

XSS = "<img src=x onerror=alert(1)>"
PAGES = (
    "/admin/blueprints",
    "/admin/blueprints/new",
    "/admin/blueprints/{blueprint}",
    "/admin/servers",
    "/admin/servers?q=alice",
    "/admin/servers/new",
    "/admin/audit",
    "/admin/audit?action=user.&actor=admin%40example.org",
)


def paths(world: World) -> list[str]:
    return [page.format(blueprint=world.ids["blueprint"]) for page in PAGES]


async def test_administrators_get_every_page_with_the_strict_policy(world: World) -> None:
    for path in paths(world):
        response = await world.admin.request("GET", path)
        text = await response.text()
        assert response.status == 200, (path, text[:500])
        assert response.content_type == "text/html"
        assert "'unsafe-inline'" not in response.headers["Content-Security-Policy"]
        assert "style=" not in text, path
        assert " onclick" not in text, path


async def test_users_are_refused_every_page_and_visitors_sent_to_sign_in(world: World) -> None:
    for path in paths(world):
        for user in (world.alice, world.carol):
            response = await user.request("GET", path)
            assert response.status == 403, path
            assert "administrators only" in await response.text()
        visitor = await world.panel.browser()
        response = await visitor.request("GET", path, allow_redirects=False)
        assert response.status == 303, path
        assert response.headers["Location"].startswith("/login?next=")


async def test_an_unknown_blueprint_is_a_404_page(world: World) -> None:
    response = await world.admin.request("GET", f"/admin/blueprints/{uuid.uuid4()}")
    assert response.status == 404


async def test_names_are_escaped_in_the_lists(world: World) -> None:
    server_id = world.ids["alice_server"]
    await world.admin.json("PATCH", f"/api/v1/servers/{server_id}", json={"name": XSS})
    blueprint = await world.admin.json("GET", f"/api/v1/blueprints/{world.ids['blueprint']}")
    body = {
        k: v
        for k, v in blueprint.items()
        if k not in {"id", "egg_uuid", "created_at"} and v is not None
    }
    await world.admin.json(
        "PUT", f"/api/v1/blueprints/{world.ids['blueprint']}", json={**body, "name": XSS}
    )
    for path in ("/admin/servers", "/admin/blueprints", f"/admin/blueprints/{blueprint['id']}"):
        text = await (await world.admin.request("GET", path)).text()
        assert XSS not in text, path
        assert "&lt;img src=x onerror=alert(1)&gt;" in text, path


async def test_the_audit_filters_reach_the_trail_and_bad_ones_are_named(world: World) -> None:
    server_id = world.ids["alice_server"]
    await world.admin.json("PATCH", f"/api/v1/servers/{server_id}", json={"name": "renamed"})
    text = await (
        await world.admin.request(
            "GET", f"/admin/audit?action=server.renamed&target_type=server&target_id={server_id}"
        )
    ).text()
    rows = re.findall(r'<tr data-audit-id="\d+">', text)
    assert len(rows) == 1
    assert "server.renamed" in text
    assert '<time datetime="' in text
    future = await world.admin.request("GET", "/admin/audit?since=2999-01-01T00:00")
    assert "No entry matches these filters." in await future.text()
    refused = await world.admin.request("GET", "/admin/audit?actor=nobody%40example.org&since=x")
    text = await refused.text()
    assert refused.status == 400
    assert "no user has this e-mail address or id" in text
    assert "not a date and time" in text


async def test_a_chosen_allocation_must_be_a_free_one_of_the_node(world: World) -> None:
    body = {
        "name": "placed",
        "owner_id": world.ids["alice_user"],
        "blueprint_id": world.ids["blueprint"],
        "memory_mib": 512,
        "cpu_percent": 100,
        "disk_mib": 1024,
    }
    # A location's placement picks its node: a port cannot be chosen with it.
    located = {**body, "location_id": str(uuid.uuid4()), "allocation_id": world.ids["allocation"]}
    refused = await world.admin.json("POST", "/api/v1/servers", status=400, json=located)
    assert "give node_id with it" in str(refused["error"])
    allocations = await world.admin.json("GET", f"/api/v1/nodes/{world.ids['node']}/allocations")
    taken = next(a["id"] for a in allocations["data"] if a["server_id"] is not None)
    placed = {**body, "node_id": world.ids["node"], "allocation_id": taken}
    refused = await world.admin.json("POST", "/api/v1/servers", status=409, json=placed)
    assert "is not free" in refused["error"]["message"]
