"""The server list: what each caller sees, in exactly the shape the OpenAPI document declares.

The list is serialised from plain rows, not through its response model; these tests hold the
two together: every page validates as ``Page[ServerOut]`` and dumps back to itself, and every
entry is what the single-server route (which goes through the model) answers, less the last
install that only the single-server route shows.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from pytest_aiohttp import AiohttpClient, AiohttpServer
from sqlalchemy import update

from control_plane.app import create_app
from control_plane.db.engine import session_factory
from control_plane.db.models import Allocation, Subuser
from control_plane.db.session import transaction
from control_plane.keys import ENGINE
from control_plane.schemas.common import Page
from control_plane.schemas.servers import ServerOut
from control_plane.settings import ControlPlaneSettings
from tests.support.panel import Browser, Panel
from tests.support.world import World, build_world


@pytest.fixture
async def world(panel: Panel) -> World:
    world = await build_world(panel)
    alice_server = uuid.UUID(world.ids["alice_server"])
    bob_server = uuid.UUID(world.ids["bob_server"])
    async with transaction(session_factory(panel.server.app[ENGINE])) as db:
        # alice's server gets a second port (listed by port), bob's server loses its only one.
        await db.execute(
            update(Allocation)
            .where(Allocation.port == 30009, Allocation.server_id.is_(None))
            .values(server_id=alice_server)
        )
        await db.execute(
            update(Allocation).where(Allocation.server_id == bob_server).values(server_id=None)
        )
        await db.execute(
            update(Subuser)
            .where(Subuser.id == uuid.UUID(world.ids["carol_subuser"]))
            .values(permissions=["files.read", "console.read"])
        )
    return world


async def listing(browser: Browser, query: str = "") -> dict[str, Any]:
    page: dict[str, Any] = await browser.json("GET", f"/api/v1/servers{query}")
    assert Page[ServerOut].model_validate(page).model_dump(mode="json") == page
    return page


async def test_every_entry_is_what_the_single_server_route_answers(world: World) -> None:
    bot = await world.panel.browser()
    bot.api_key = (
        await world.alice.json(
            "POST",
            "/api/v1/account/api-keys",
            status=201,
            json={"name": "list", "scopes": ["read"]},
        )
    )["key"]
    seen: dict[str, list[str]] = {}
    for name, browser in (
        ("admin", world.admin),
        ("alice", world.alice),
        ("alice's key", bot),
        ("bob", world.bob),
        ("carol", world.carol),
    ):
        page = await listing(browser)
        assert page["meta"] == {"page": 1, "per_page": 50, "total": len(page["data"])}
        for server in page["data"]:
            single = await browser.json("GET", f"/api/v1/servers/{server['id']}")
            assert single.pop("install")["state"] == "none"
            assert server == single
        seen[name] = [s["name"] for s in page["data"]]
        if name == "carol":
            assert page["data"][0]["permissions"] == ["console.read", "files.read"]
            assert [a["port"] for a in page["data"][0]["allocations"]] == [30000, 30009]
        if name == "bob":
            assert page["data"][0]["allocations"] == []
            assert page["data"][0]["permissions"] == ["*"]
    assert seen == {
        "admin": ["alice's server", "bob's server"],
        "alice": ["alice's server"],
        "alice's key": ["alice's server"],
        "bob": ["bob's server"],
        "carol": ["alice's server"],
    }


async def test_pages_carry_the_total_even_past_the_end(world: World) -> None:
    first = await listing(world.admin, "?per_page=1")
    second = await listing(world.admin, "?per_page=1&page=2")
    past = await listing(world.admin, "?per_page=1&page=3")
    assert [s["name"] for s in first["data"] + second["data"]] == [
        "alice's server",
        "bob's server",
    ]
    assert first["meta"] == {"page": 1, "per_page": 1, "total": 2}
    assert second["meta"] == {"page": 2, "per_page": 1, "total": 2}
    assert past == {"data": [], "meta": {"page": 3, "per_page": 1, "total": 2}}
    assert await listing(world.carol, "?page=2") == {
        "data": [],
        "meta": {"page": 2, "per_page": 50, "total": 1},
    }
    nobody = await world.panel.signed_in("nobody@example.org")
    assert await listing(nobody) == {"data": [], "meta": {"page": 1, "per_page": 50, "total": 0}}


async def test_a_bad_page_is_refused_with_field_details(world: World) -> None:
    refused = await world.alice.json("GET", "/api/v1/servers?per_page=101", status=400)
    assert refused["error"]["details"][0]["loc"] == ["per_page"]


async def test_revocations_through_another_replica_apply_at_once(
    world: World,
    settings: ControlPlaneSettings,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
) -> None:
    """Each request reads the key, session and sub-user rows afresh: nothing is cached, not
    even by a pooled reader connection, so a change made by another replica holds at once."""
    other = Panel(await aiohttp_server(create_app(settings, background_jobs=False)), aiohttp_client)
    alice_there = await other.browser()
    await alice_there.login("alice@example.org")
    admin_there = await other.browser()
    await admin_there.login("admin@example.org")
    key = await world.alice.json(
        "POST", "/api/v1/account/api-keys", status=201, json={"name": "r", "scopes": ["read"]}
    )
    bot = await world.panel.browser()
    bot.api_key = key["key"]
    for _ in range(3):  # the reader's pooled connections have all been used
        assert len((await listing(bot))["data"]) == 1
        assert len((await listing(world.carol))["data"]) == 1

    await alice_there.json("DELETE", f"/api/v1/account/api-keys/{key['id']}", status=204)
    await bot.json("GET", "/api/v1/servers", status=401)

    server, carol = world.ids["alice_server"], world.ids["carol_subuser"]
    await alice_there.json("DELETE", f"/api/v1/servers/{server}/users/{carol}", status=204)
    assert await listing(world.carol) == {
        "data": [],
        "meta": {"page": 1, "per_page": 50, "total": 0},
    }

    await admin_there.json(
        "PATCH", f"/api/v1/users/{world.ids['alice_user']}", json={"disabled": True}
    )
    await world.alice.json("GET", "/api/v1/servers", status=401)
