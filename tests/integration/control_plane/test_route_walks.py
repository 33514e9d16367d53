"""Walk the whole route table: no route lets another user at A's objects, none skips CSRF.

A route added later without the right checks fails these tests, because they enumerate the
route table rather than a hand-kept list.
"""

from __future__ import annotations

import re

import pytest

from control_plane.api.registry import endpoints
from control_plane.api.routing import Access, Endpoint
from tests.support.panel import Panel
from tests.support.world import World, build_world

# Which of alice's objects fills each path parameter.
ALICE_OBJECT = {
    "server_id": "alice_server",
    "subuser_id": "alice_subuser",
    "key_id": "alice_key",
    "session_id": "alice_session",
    "user_id": "alice_user",
    "node_id": "node",
    "location_id": "location",
    "blueprint_id": "blueprint",
    "allocation_id": "allocation",
    "backup_id": "alice_backup",
    "passkey_id": "alice_passkey",
}
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


def concrete(endpoint: Endpoint, world: World) -> str:
    def fill(match: re.Match[str]) -> str:
        name = match[1]
        assert name in ALICE_OBJECT, f"{endpoint.method} {endpoint.path}: teach this test {name!r}"
        return world.ids[ALICE_OBJECT[name]]

    return re.sub(r"\{(\w+)\}", fill, endpoint.path)


@pytest.fixture
async def world(panel: Panel) -> World:
    return await build_world(panel)


async def test_another_user_gets_404_on_every_route_of_alices_objects(world: World) -> None:
    checked = 0
    for endpoint in endpoints():
        if "{" not in endpoint.path:
            continue
        path = concrete(endpoint, world)
        response = await world.bob.request(endpoint.method, path, json={})
        # Administration routes: bob is not an administrator, whatever the object.
        admin_only = endpoint.access is Access.ADMIN and endpoint.permission is None
        expected = 403 if admin_only else 404
        assert response.status == expected, (
            f"{endpoint.method} {endpoint.path} gave {response.status}"
        )
        body = await response.json()
        assert "alice" not in str(body).lower(), f"{endpoint.path} leaks: {body}"
        checked += 1
    assert checked >= 25


async def test_every_unsafe_cookie_route_needs_the_csrf_token(world: World) -> None:
    browsers = {"admin": world.admin, "alice": world.alice}
    for browser in browsers.values():
        browser.send_csrf = False
    checked = 0
    for endpoint in endpoints():
        if endpoint.method not in UNSAFE:
            continue
        for name, browser in browsers.items():
            path = concrete(endpoint, world)
            missing = await browser.request(endpoint.method, path, json={})
            wrong = await browser.request(
                endpoint.method, path, json={}, headers={"X-CSRF-Token": "A" * 43}
            )
            for response in (missing, wrong):
                assert response.status == 403, f"{name}: {endpoint.method} {endpoint.path}"
                assert (await response.json())["error"]["message"].startswith("missing or wrong")
            checked += 1
    assert checked >= 40
    # Still signed in: the refusals changed nothing.
    for browser in browsers.values():
        assert (await browser.request("GET", "/api/v1/auth/session")).status == 200


async def test_api_keys_need_no_csrf_token(world: World) -> None:
    created = await world.alice.json(
        "POST",
        "/api/v1/account/api-keys",
        status=201,
        json={"name": "w", "scopes": ["read", "write"]},
    )
    bot = await world.panel.browser()
    bot.api_key = created["key"]
    server = world.ids["alice_server"]
    body = await bot.json("PATCH", f"/api/v1/servers/{server}", json={"name": "renamed by bot"})
    assert body["name"] == "renamed by bot"


async def test_unauthenticated_requests_get_401_everywhere_but_public_routes(panel: Panel) -> None:
    world = await build_world(panel)
    anonymous = await panel.browser()
    for endpoint in endpoints():
        if endpoint.access is Access.PUBLIC:
            continue
        response = await anonymous.request(endpoint.method, concrete(endpoint, world), json={})
        assert response.status == 401, f"{endpoint.method} {endpoint.path}"
