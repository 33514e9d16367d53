"""A server's ports as its users manage them (``allocations.update``): notes on each port and
which one is the main one (the game's SERVER_PORT), on our API and Pterodactyl's client API,
on SQLite and PostgreSQL. The world's control plane cannot command its node: a new main
port, which the node must take first, is refused there with nothing changed (the game
taking it is ``test_end_to_end.py``'s)."""

from __future__ import annotations

import uuid

from sqlalchemy import select, update

from control_plane.db.engine import session_factory
from control_plane.db.models import Allocation, Blueprint, Subuser, User
from control_plane.db.session import transaction
from control_plane.keys import ENGINE
from control_plane.services.servers import placement
from tests.support.compat import pterodactyl_key
from tests.support.world import World


async def second_port(world: World) -> tuple[str, int]:
    """One more of the node's free ports given to alice's server (an administrator's doing,
    as Pterodactyl's ``allocation.additional`` is); its id and number."""
    async with transaction(session_factory(world.panel.server.app[ENGINE])) as db:
        port = await db.scalar(
            select(Allocation).where(Allocation.server_id.is_(None)).order_by(Allocation.port)
        )
        assert port is not None
        port.server_id = uuid.UUID(world.ids["alice_server"])
        assert port.compat_id is not None
        return str(port.id), port.compat_id


async def test_users_note_what_a_port_is_for_and_see_which_is_the_main_one(world: World) -> None:
    server = world.ids["alice_server"]
    base = f"/api/v1/servers/{server}/allocations"
    mine = world.ids["alice_allocation"]
    (listed,) = (await world.alice.json("GET", base))["data"]
    assert listed == {"id": mine, "ip": "127.0.0.1", "port": 30000, "notes": None, "primary": True}

    noted = await world.alice.json("PATCH", f"{base}/{mine}", json={"notes": "game and query"})
    assert noted == {**listed, "notes": "game and query"}
    assert (await world.alice.json("GET", base))["data"] == [noted]
    # Leaving notes out leaves them; null clears them.
    assert (await world.alice.json("PATCH", f"{base}/{mine}", json={}))["notes"] == "game and query"
    cleared = await world.alice.json("PATCH", f"{base}/{mine}", json={"notes": None})
    assert cleared["notes"] is None

    trail = await world.admin.json("GET", "/api/v1/audit?action=server.allocation.updated")
    assert trail["meta"]["total"] == 3
    assert trail["data"][0]["details"] == {
        "allocation": "127.0.0.1:30000",
        "notes": True,
        "main": False,
    }


async def test_what_a_user_gets_wrong_is_a_clear_400_and_changes_nothing(world: World) -> None:
    server = world.ids["alice_server"]
    base = f"/api/v1/servers/{server}/allocations"
    mine = world.ids["alice_allocation"]
    await world.alice.json("PATCH", f"{base}/{mine}", json={"notes": "kept"})
    too_long = await world.alice.json(
        "PATCH", f"{base}/{mine}", status=400, json={"notes": "x" * 256}
    )
    assert too_long["error"]["details"][0]["loc"] == ["notes"]
    unset = await world.alice.json("PATCH", f"{base}/{mine}", status=400, json={"primary": False})
    assert unset["error"]["details"][0]["loc"] == ["primary"]
    assert "make another port the main one" in unset["error"]["details"][0]["msg"]
    # A port that is not this server's (free, or another server's): not found, whoever asks.
    bobs = world.ids["bob_allocation"]
    for other in (world.ids["allocation"], bobs, str(uuid.uuid4())):
        missing = await world.alice.json(
            "PATCH", f"{base}/{other}", status=404, json={"notes": "mine now"}
        )
        assert missing["error"]["message"] == "no such port on this server"
    assert (await world.alice.json("GET", base))["data"][0]["notes"] == "kept"
    bob_base = f"/api/v1/servers/{world.ids['bob_server']}/allocations"
    assert (await world.admin.json("GET", bob_base))["data"][0]["notes"] is None


async def test_a_new_main_port_goes_to_the_node_first_and_is_kept_only_once_it_took_it(
    world: World,
) -> None:
    server = world.ids["alice_server"]
    base = f"/api/v1/servers/{server}/allocations"
    mine = world.ids["alice_allocation"]
    other, _ = await second_port(world)
    before = (await world.alice.json("GET", base))["data"]
    assert [(p["id"], p["primary"]) for p in before] == [(mine, True), (other, False)]
    refused = await world.alice.json(
        "PATCH", f"{base}/{other}", status=503, json={"primary": True, "notes": "new main"}
    )
    assert refused["error"]["code"] == "node_unavailable"
    assert (await world.alice.json("GET", base))["data"] == before  # nothing kept, notes neither
    # Making the main port main again asks nothing of the node.
    again = await world.alice.json("PATCH", f"{base}/{mine}", json={"primary": True})
    assert again["primary"] is True


async def test_sub_users_need_allocations_update_to_change_ports(world: World) -> None:
    server = world.ids["alice_server"]
    mine = world.ids["alice_allocation"]
    path = f"/api/v1/servers/{server}/allocations/{mine}"
    async with transaction(session_factory(world.panel.server.app[ENGINE])) as db:
        await db.execute(
            update(Subuser)
            .where(Subuser.id == uuid.UUID(world.ids["carol_subuser"]))
            .values(permissions=["allocations.read"])
        )
    await world.carol.json("PATCH", path, status=403, json={"notes": "carol was here"})
    async with transaction(session_factory(world.panel.server.app[ENGINE])) as db:
        await db.execute(
            update(Subuser)
            .where(Subuser.id == uuid.UUID(world.ids["carol_subuser"]))
            .values(permissions=["allocations.update"])
        )
    assert (await world.carol.json("PATCH", path, json={"notes": "by carol"}))[
        "notes"
    ] == "by carol"


async def test_pterodactyls_client_api_notes_ports_and_shows_the_main_one(world: World) -> None:
    client = await pterodactyl_key(world.panel, world.alice, "client")
    identifier = world.compat_ids["client"]["alice_server"]
    number = world.compat_ids["client"]["alice_allocation"]
    network = f"/api/client/servers/{identifier}/network/allocations"
    await client.json("GET", "/api/client")  # kept by this replica: must be read anew after
    noted = await client.json("POST", f"{network}/{number}", json={"notes": "voice chat"})
    assert noted == {
        "object": "allocation",
        "attributes": {
            "id": int(number),
            "ip": "127.0.0.1",
            "ip_alias": None,
            "port": 30000,
            "notes": "voice chat",
            "is_default": True,
        },
    }
    listed = await client.json("GET", network)
    assert [a["attributes"] for a in listed["data"]] == [noted["attributes"]]
    servers = await client.json("GET", "/api/client")
    (shown,) = [
        s["attributes"] for s in servers["data"] if s["attributes"]["identifier"] == identifier
    ]
    assert shown["relationships"]["allocations"]["data"][0]["attributes"]["notes"] == "voice chat"
    one = await client.json("GET", f"/api/client/servers/{identifier}")
    assert (
        one["attributes"]["relationships"]["allocations"]["data"][0]["attributes"]
        == (noted["attributes"])
    )
    _, other = await second_port(world)
    refused = await client.json("POST", f"{network}/{other}/primary", status=503)
    assert refused["errors"][0]["status"] == "503"
    assert [a["attributes"]["is_default"] for a in (await client.json("GET", network))["data"]] == [
        True,
        False,
    ]
    # Not one of this server's ports (a free one, bob's, or no such number): Pterodactyl's 404.
    async with transaction(session_factory(world.panel.server.app[ENGINE])) as db:
        free = await db.scalar(
            select(Allocation.compat_id).where(Allocation.server_id.is_(None)).limit(1)
        )
        bobs = await db.scalar(
            select(Allocation.compat_id).where(
                Allocation.id == uuid.UUID(world.ids["bob_allocation"])
            )
        )
    await client.json("POST", f"{network}/{bobs}", status=404, json={"notes": "mine now"})
    await client.json("POST", f"{network}/{free}", status=404, json={"notes": "mine now"})
    await client.json("POST", f"{network}/999999/primary", status=404)


async def test_a_port_given_to_a_server_comes_without_the_last_holders_notes(world: World) -> None:
    """Notes are the server's users' own: a port freed (its server deleted) and given to
    another server is given clean, and is not that server's main port by an old choice."""
    factory = session_factory(world.panel.server.app[ENGINE])
    async with transaction(factory) as db:
        freed = await db.get(Allocation, uuid.UUID(world.ids["allocation"]))
        assert freed is not None
        freed.notes, freed.is_primary = "the last tenant's admin port", True
    async with transaction(factory) as db:
        owner = await db.get_one(User, uuid.UUID(world.ids["bob_user"]))
        blueprint = await db.get_one(Blueprint, uuid.UUID(world.ids["blueprint"]))
        lowest = await db.get_one(Allocation, uuid.UUID(world.ids["alice_allocation"]))
        lowest.server_id = None  # alice's, freed too: the lowest port of the two
        server = await placement.create_server(
            db,
            name="bob's second",
            owner=owner,
            blueprint=blueprint,
            node_id=lowest.node_id,
            image=None,
            limits=placement.ServerLimits(512, 0, 100, 1024, 256),
            variables={},
            allocation_ids=[freed.id, lowest.id],
        )
        ports = await placement.allocations_of(db, server.id)
    # The first asked for is its main port (Pterodactyl's allocation.default).
    assert [(p.port, p.notes, p.is_primary) for p in ports] == [
        (freed.port, None, True),
        (30000, None, False),
    ]


async def test_sub_users_without_allocations_read_get_no_notes_from_pterodactyls_list(
    world: World,
) -> None:
    """Every member sees the addresses (to connect); the notes only with allocations.read,
    as on our API (Pterodactyl hides them the same way)."""
    server = world.ids["alice_server"]
    mine = world.ids["alice_allocation"]
    await world.alice.json(
        "PATCH", f"/api/v1/servers/{server}/allocations/{mine}", json={"notes": "rcon 25575"}
    )
    carol = await pterodactyl_key(world.panel, world.carol, "client")
    identifier = world.compat_ids["client"]["alice_server"]

    async def notes_carol_sees() -> list[object]:
        listed = await carol.json("GET", "/api/client")
        (shown,) = [s for s in listed["data"] if s["attributes"]["identifier"] == identifier]
        one = await carol.json("GET", f"/api/client/servers/{identifier}")
        return [
            a["attributes"]["notes"]
            for answer in (shown, one)
            for a in answer["attributes"]["relationships"]["allocations"]["data"]
        ]

    assert await notes_carol_sees() == [None, None]  # console.read only
    async with transaction(session_factory(world.panel.server.app[ENGINE])) as db:
        await db.execute(
            update(Subuser)
            .where(Subuser.id == uuid.UUID(world.ids["carol_subuser"]))
            .values(permissions=["console.read", "allocations.read"])
        )
    assert await notes_carol_sees() == ["rcon 25575", "rcon 25575"]
