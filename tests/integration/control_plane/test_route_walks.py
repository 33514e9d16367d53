"""Walk the whole route table: no route lets another user at A's objects, none skips CSRF.

A route added later without the right checks fails these tests, because they enumerate the
route table rather than a hand-kept list.
"""

from __future__ import annotations

import re

from aiohttp import ClientResponse
from pytest_aiohttp import AiohttpClient, AiohttpServer
from sqlalchemy.ext.asyncio import AsyncEngine

from control_plane.api.registry import PAGE_TABLES, endpoints
from control_plane.api.routing import Access, Endpoint
from control_plane.app import create_app
from control_plane.settings import load_settings
from tests.integration.control_plane.conftest import AUTH_SECRET
from tests.support.compat import error_of
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
    "server_allocation_id": "alice_allocation",
    "backup_id": "alice_backup",
    "passkey_id": "alice_passkey",
    "identity_id": "alice_oauth_identity",
    "ssh_key_id": "alice_ssh_key",
    "invitation_id": "alice_invitation",
    "account_webhook_id": "alice_account_webhook",
    "webhook_id": "alice_server_webhook",
    "panel_webhook_id": "panel_webhook",
    "schedule_id": "alice_schedule",
    "task_id": "alice_schedule_task",
}
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
PAGE_PATHS = {endpoint.path for table in PAGE_TABLES for endpoint in table.endpoints}


# The Pterodactyl-compatible APIs' own path parameters.
COMPAT_OBJECT = {"nest_id": "nest", "egg_id": "blueprint"}


def concrete(endpoint: Endpoint, world: World) -> str:
    def fill(match: re.Match[str]) -> str:
        name = object_name = match[1]
        if name == "allocation_id" and "/servers/" in endpoint.path:
            object_name = "server_allocation_id"  # one of alice's server's, not a free one
        if endpoint.api != "native" and name in endpoint.path_ids:
            if name == "external_id":
                owner = "alice_user" if "/users/" in endpoint.path else "alice_server"
                return world.compat_ids[endpoint.api][f"{owner}_external"]
            key = COMPAT_OBJECT.get(object_name) or ALICE_OBJECT[object_name]
            label = f"{endpoint.method} {endpoint.path}: teach this test {name!r}"
            assert key in world.compat_ids[endpoint.api], label
            return world.compat_ids[endpoint.api][key]
        assert object_name in ALICE_OBJECT, (
            f"{endpoint.method} {endpoint.path}: teach this test {name!r}"
        )
        return world.ids[ALICE_OBJECT[object_name]]

    return re.sub(r"\{(\w+)\}", fill, endpoint.path)


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
        body = await _body(response)
        assert "alice" not in body.lower(), f"{endpoint.path} leaks: {body}"
        checked += 1
    assert checked >= 25


async def _body(response: ClientResponse) -> str:
    """An answer's text: JSON from the API, an error page from a page route."""
    if response.content_type == "text/html":
        return await response.text()
    return str(await response.json())


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
                assert error_of(await response.json())["message"].startswith("missing or wrong")
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
    """API routes answer 401; pages send the visitor to the sign-in page, and back after."""
    world = await build_world(panel)
    anonymous = await panel.browser()
    pages = {endpoint.path for table in PAGE_TABLES for endpoint in table.endpoints}
    for endpoint in endpoints():
        if endpoint.access is Access.PUBLIC:
            continue
        path = concrete(endpoint, world)
        response = await anonymous.request(endpoint.method, path, json={}, allow_redirects=False)
        if endpoint.path in pages:
            assert response.status == 303, f"{endpoint.method} {endpoint.path}"
            assert response.headers["Location"] == f"/login?next={path}"
        else:
            assert response.status == 401, f"{endpoint.method} {endpoint.path}"


def respellings(canonical: str) -> list[str]:
    """Other ways to write the same UUID, which Python's uuid.UUID() would all accept."""
    bare = canonical.replace("-", "")
    spellings = [
        canonical.upper(),
        bare,
        f"{{{canonical}}}",
        f"urn:uuid:{canonical}",
        canonical[:8].upper() + canonical[8:],
    ]
    return [other for other in spellings if other != canonical]  # digits have no case


async def test_ids_in_paths_are_accepted_only_in_their_one_spelling(world: World) -> None:
    """On every route with an id, any other spelling of an id the caller may reach is 404."""
    checked = 0
    for endpoint in endpoints():
        if "{" not in endpoint.path:
            continue
        caller = world.admin if endpoint.access is Access.ADMIN else world.alice
        canonical = concrete(endpoint, world)
        ids = re.findall(r"[0-9a-f]{8}-[0-9a-f-]{27}", canonical)
        for original in ids:
            for other in respellings(original):
                path = canonical.replace(original, other)
                response = await caller.request(endpoint.method, path, json={})
                assert response.status == 404, f"{endpoint.method} {path}: {response.status}"
                if response.content_type == "text/html":  # a page route's error is a page
                    assert endpoint.path in PAGE_PATHS, path
                    assert "<h1>404</h1>" in await response.text(), path
                    checked += 1
                    continue
                code = error_of(await response.json())["code"]
                assert code in ("not_found", "NotFoundHttpException"), f"{path}: {code}"
                checked += 1
    assert checked >= 200


def compat_respellings(value: str) -> list[str]:
    """Other ways to write a Pterodactyl-compatible id that a lax parser would accept."""
    if value.isdigit():
        return [f"0{value}", f"{value}.0", f"+{value}", f"{value}%20"]
    return [value.upper(), f"{value}0", value[:-1], f"%20{value}"]


async def test_compatible_ids_are_accepted_only_in_their_one_spelling(world: World) -> None:
    """The integer ids and server identifiers of the Pterodactyl-compatible paths, too."""
    checked = 0
    for endpoint in endpoints():
        if "{" not in endpoint.path or endpoint.api == "native":
            continue
        caller = world.admin if endpoint.access is Access.ADMIN else world.alice
        canonical = concrete(endpoint, world)
        for name in re.findall(r"\{(\w+)\}", endpoint.path):
            prefix = endpoint.path.split("{" + name + "}", 1)[0]
            head = re.sub(r"\{(\w+)\}", r"[^/]+", prefix)
            original = re.match(head + r"([^/]+)", canonical)
            assert original is not None
            value = original[1]
            for other in compat_respellings(value):
                if other == value:
                    continue
                path = canonical[: original.start(1)] + other + canonical[original.end(1) :]
                response = await caller.request(endpoint.method, path, json={})
                assert response.status == 404, f"{endpoint.method} {path}: {response.status}"
                assert error_of(await response.json())["code"] == "NotFoundHttpException"
                checked += 1
    assert checked >= 90


async def test_a_respelled_server_id_never_gets_a_fresh_power_bucket(
    engine: AsyncEngine,
    database_url: str,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
) -> None:
    settings = load_settings(
        {"STELLAR_DATABASE_URL": database_url, "STELLAR_AUTH_SECRET": AUTH_SECRET}
    )
    panel = Panel(await aiohttp_server(create_app(settings, background_jobs=False)), aiohttp_client)
    world = await build_world(panel)
    server = world.ids["alice_server"]
    power = {"action": "start"}
    for _ in range(10):
        response = await world.alice.request("POST", f"/api/v1/servers/{server}/power", json=power)
        assert response.status == 503  # let through; the node is down
    for other in [server, *respellings(server)]:
        response = await world.alice.request("POST", f"/api/v1/servers/{other}/power", json=power)
        assert response.status in (404, 429), other
        assert response.status == (429 if other == server else 404)
