"""Contract of ``/api/client`` (Pterodactyl's Client API) on the authorisation world: what a
user's ``ptlc_`` key sees and may do, with exact status codes (the node is unreachable here:
let-through actions answer 503; test_compat_end_to_end.py runs them on a real agent)."""

from __future__ import annotations

import uuid

from pytest_aiohttp import AiohttpClient, AiohttpServer
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from control_plane.app import create_app
from control_plane.db.engine import session_factory
from control_plane.db.models import Subuser
from control_plane.db.session import transaction
from control_plane.keys import ENGINE
from control_plane.settings import load_settings
from tests.integration.control_plane.conftest import AUTH_SECRET
from tests.support.compat import MEDIA_TYPE, pterodactyl_key
from tests.support.panel import Panel
from tests.support.world import World, build_world


async def test_the_list_shows_what_the_user_sees_with_pterodactyls_paging(world: World) -> None:
    alice = await pterodactyl_key(world.panel, world.alice, "client")
    listed = await alice.json("GET", "/api/client", headers={"Accept": MEDIA_TYPE})
    assert listed["object"] == "list"
    assert listed["meta"]["pagination"]["total"] == 1
    server = listed["data"][0]
    assert server["object"] == "server"
    attributes = server["attributes"]
    assert attributes["identifier"] == world.compat_ids["client"]["alice_server"]
    assert attributes["uuid"] == world.ids["alice_server"]
    assert attributes["server_owner"] is True
    assert attributes["limits"]["memory"] == 512
    ports = attributes["relationships"]["allocations"]["data"]
    assert ports[0]["attributes"]["is_default"] is True
    carol = await pterodactyl_key(world.panel, world.carol, "client")
    shared = await carol.json("GET", "/api/client/")
    assert [s["attributes"]["server_owner"] for s in shared["data"]] == [False]
    bob = await pterodactyl_key(world.panel, world.bob, "client")
    theirs = await bob.json("GET", "/api/client?per_page=1")
    assert [s["attributes"]["name"] for s in theirs["data"]] == ["bob's server"]


async def test_a_sub_user_sees_its_permissions_in_pterodactyls_names(world: World) -> None:
    identifier = world.compat_ids["client"]["alice_server"]
    async with transaction(session_factory(world.panel.server.app[ENGINE])) as db:
        await db.execute(
            update(Subuser)
            .where(Subuser.id == uuid.UUID(world.ids["carol_subuser"]))
            .values(permissions=["console.read", "files.*", "control.start"])
        )
    carol = await pterodactyl_key(world.panel, world.carol, "client")
    detail = await carol.json("GET", f"/api/client/servers/{identifier}")
    assert detail["meta"]["is_server_owner"] is False
    assert detail["meta"]["user_permissions"] == [
        "control.start",
        "file.archive",
        "file.create",
        "file.delete",
        "file.read",
        "file.read-content",
        "file.sftp",
        "file.update",
        "websocket.connect",
    ]
    # Allowed to start (the node is unreachable), not to stop or to type commands.
    start = {"signal": "start"}
    await carol.json("POST", f"/api/client/servers/{identifier}/power", status=503, json=start)
    stop = await carol.json(
        "POST", f"/api/client/servers/{identifier}/power", status=403, json={"signal": "stop"}
    )
    assert stop["errors"][0]["code"] == "AccessDeniedHttpException"
    await carol.json(
        "POST", f"/api/client/servers/{identifier}/command", status=403, json={"command": "x"}
    )
    alice = await pterodactyl_key(world.panel, world.alice, "client")
    owner = await alice.json("GET", f"/api/client/servers/{identifier}")
    assert owner["meta"] == {"is_server_owner": True, "user_permissions": ["*"]}


async def test_another_users_server_is_404_and_a_read_key_cannot_act(world: World) -> None:
    identifier = world.compat_ids["client"]["alice_server"]
    bob = await pterodactyl_key(world.panel, world.bob, "client")
    hidden = await bob.json("GET", f"/api/client/servers/{identifier}", status=404)
    assert hidden["errors"][0] == {
        "code": "NotFoundHttpException",
        "status": "404",
        "detail": "no such server",
    }
    await bob.json(
        "POST", f"/api/client/servers/{identifier}/power", status=404, json={"signal": "kill"}
    )
    reader = await pterodactyl_key(world.panel, world.alice, "client", ["read"])
    await reader.json("GET", f"/api/client/servers/{identifier}")
    refused = await reader.json(
        "POST", f"/api/client/servers/{identifier}/power", status=403, json={"signal": "start"}
    )
    assert "write" in refused["errors"][0]["detail"]


async def test_bad_input_is_422_with_the_field_and_rule(world: World) -> None:
    identifier = world.compat_ids["client"]["alice_server"]
    alice = await pterodactyl_key(world.panel, world.alice, "client")
    bad = await alice.json(
        "POST", f"/api/client/servers/{identifier}/power", status=422, json={"signal": "explode"}
    )
    assert bad["errors"][0]["meta"] == {"source_field": "signal", "rule": "in"}
    empty = await alice.json(
        "POST", f"/api/client/servers/{identifier}/command", status=422, json={}
    )
    assert empty["errors"][0]["meta"] == {"source_field": "command", "rule": "required"}
    unknown = await alice.json(
        "POST",
        f"/api/client/servers/{identifier}/power",
        status=422,
        json={"signal": "start", "x": 1},
    )
    assert unknown["errors"][0]["meta"]["rule"] == "prohibited"


async def test_the_same_rate_limit_bucket_as_our_power_route(
    engine: AsyncEngine,
    database_url: str,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
) -> None:
    """Pterodactyl's power route and ours draw from one per-server bucket."""
    limits = "authentication=1000/60,sensitive=1000/60,api=1000/60,files=1000/60,power=4/60"
    settings = load_settings(
        {
            "STELLAR_DATABASE_URL": database_url,
            "STELLAR_AUTH_SECRET": AUTH_SECRET,
            "STELLAR_BCRYPT_COST": "10",
            "STELLAR_RATE_LIMITS": limits,
        }
    )
    panel = Panel(await aiohttp_server(create_app(settings, background_jobs=False)), aiohttp_client)
    world = await build_world(panel)
    identifier = world.compat_ids["client"]["alice_server"]
    server = world.ids["alice_server"]
    alice = await pterodactyl_key(world.panel, world.alice, "client")
    ours = {"action": "start"}
    theirs = {"signal": "start"}
    for _ in range(2):
        await world.alice.json("POST", f"/api/v1/servers/{server}/power", status=503, json=ours)
        await alice.json("POST", f"/api/client/servers/{identifier}/power", status=503, json=theirs)
    limited = await alice.json(
        "POST", f"/api/client/servers/{identifier}/power", status=429, json=theirs
    )
    assert limited["errors"][0]["code"] == "TooManyRequestsHttpException"
    await world.alice.json("POST", f"/api/v1/servers/{server}/power", status=429, json=ours)


async def test_account_startup_settings_and_ports(world: World) -> None:
    identifier = world.compat_ids["client"]["alice_server"]
    server = f"/api/client/servers/{identifier}"
    alice = await pterodactyl_key(world.panel, world.alice, "client")
    me = await alice.json("GET", "/api/client/account")
    assert me["object"] == "user"
    assert me["attributes"]["email"] == "alice@example.org"
    assert me["attributes"]["admin"] is False
    startup = await alice.json("GET", f"{server}/startup")
    # Only what users may see: the hidden variable stays hidden, as on our own route.
    assert [v["attributes"]["env_variable"] for v in startup["data"]] == ["MOTD"]
    assert "hello" in startup["meta"]["startup_command"]
    ports = await alice.json("GET", f"{server}/network/allocations")
    assert ports["data"][0]["attributes"]["is_default"] is True
    await alice.json("POST", f"{server}/settings/rename", status=204, json={"name": "renamed"})
    renamed = await alice.json("GET", f"{server}")
    assert renamed["attributes"]["name"] == "renamed"
    # A valid change goes to the node first (unreachable here: nothing is kept).
    await alice.json(
        "PUT", f"{server}/startup/variable", status=503, json={"key": "MOTD", "value": "hi"}
    )
    bad = await alice.json(
        "PUT", f"{server}/startup/variable", status=422, json={"key": "MOTD", "value": "x; rm"}
    )
    assert bad["errors"][0]["meta"]["source_field"] == "variables.MOTD"
    await alice.json("POST", f"{server}/settings/reinstall", status=503)
    carol = await pterodactyl_key(world.panel, world.carol, "client")
    await carol.json("POST", f"{server}/settings/rename", status=403, json={"name": "mine"})


async def test_sub_users_in_pterodactyls_names_with_our_rules(world: World) -> None:
    identifier = world.compat_ids["client"]["alice_server"]
    users = f"/api/client/servers/{identifier}/users"
    await world.panel.create_user("erin@example.org")
    alice = await pterodactyl_key(world.panel, world.alice, "client")
    unknown = await alice.json(
        "POST", users, status=422, json={"email": "erin@example.org", "permissions": ["root"]}
    )
    assert unknown["errors"][0]["meta"]["source_field"] == "permissions.0"
    # Pterodactyl's file.read lists a directory only; ours also reads every file's contents
    # (file.read-content): granted alone it would let the sub-user read what the owner meant
    # to keep from them (configs, RCON passwords). Both or neither.
    listing_only = await alice.json(
        "POST",
        users,
        status=422,
        json={"email": "erin@example.org", "permissions": ["control.start", "file.read"]},
    )
    assert listing_only["errors"][0]["meta"]["source_field"] == "permissions.1"
    assert "file.read-content" in listing_only["errors"][0]["detail"]
    for alone in (["file.read-content"], ["file.read"]):
        await alice.json(
            "POST", users, status=422, json={"email": "erin@example.org", "permissions": alone}
        )
    added = await alice.json(
        "POST",
        users,
        json={
            "email": "erin@example.org",
            "permissions": ["control.start", "file.read", "file.read-content"],
        },
    )
    assert added["object"] == "server_subuser"
    assert added["attributes"]["permissions"] == ["control.start", "file.read", "file.read-content"]
    ours = await world.alice.json("GET", f"/api/v1/servers/{world.ids['alice_server']}/users")
    erin = next(s for s in ours["data"] if s["email"] == "erin@example.org")
    assert erin["permissions"] == ["control.start", "files.read"]
    listed = await alice.json("GET", users)
    assert "erin@example.org" in [s["attributes"]["email"] for s in listed["data"]]
    subuser = added["attributes"]["uuid"]
    await alice.json("POST", f"{users}/{subuser}", status=422, json={"permissions": ["file.read"]})
    # A node Pterodactyl has no name for (webhooks.read) is not the bot's to take away.
    native = f"/api/v1/servers/{world.ids['alice_server']}/users/{subuser}"
    await world.alice.json(
        "PATCH", native, json={"permissions": ["control.start", "files.read", "webhooks.read"]}
    )
    changed = await alice.json(
        "POST", f"{users}/{subuser}", json={"permissions": ["websocket.connect"]}
    )
    assert changed["attributes"]["permissions"] == ["websocket.connect"]
    ours = await world.alice.json("GET", f"/api/v1/servers/{world.ids['alice_server']}/users")
    erin = next(s for s in ours["data"] if s["email"] == "erin@example.org")
    assert erin["permissions"] == ["console.read", "stats.read", "webhooks.read"]
    # carol holds console.read only: she may neither add nor grant.
    carol = await pterodactyl_key(world.panel, world.carol, "client")
    await carol.json(
        "POST", users, status=403, json={"email": "erin@example.org", "permissions": []}
    )
    await alice.json("DELETE", f"{users}/{subuser}", status=204)
    await alice.json("DELETE", f"{users}/{subuser}", status=404)
