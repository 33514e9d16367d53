"""A server's users take free ports of its node and give them back, up to the server's port
limit (``allocations.create``/``allocations.delete``; Pterodactyl's ``allocation_limit``), on
our API and Pterodactyl's client API, on SQLite and PostgreSQL. The node (a ``SlowNode``,
which checks each command token as the agent does) takes the spec with the ports before the
change is answered; a node that refuses it or cannot be reached leaves the ports as they
were."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from pytest_aiohttp import AiohttpClient, AiohttpServer
from sqlalchemy import select, update

from control_plane.db.engine import session_factory
from control_plane.db.models import Allocation
from control_plane.db.session import transaction
from control_plane.keys import ENGINE
from tests.integration.control_plane.test_permission_matrix import set_permissions
from tests.integration.control_plane.test_schedules import set_state
from tests.integration.control_plane.test_slow_node import stack_with_slow_node
from tests.integration.control_plane.test_spec_races import all_held
from tests.support.compat import pterodactyl_key
from tests.support.slow_node import SlowNode
from tests.support.world import World

pytestmark = pytest.mark.usefixtures("engine")  # a migrated database of each kind


@pytest.fixture
async def stack(
    database_url: str,
    tmp_path: Path,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
) -> tuple[World, SlowNode]:
    """The world, its node a ``SlowNode`` that answers at once."""
    world, node = await stack_with_slow_node(database_url, tmp_path, aiohttp_server, aiohttp_client)
    node.delay = 0
    return world, node


def ports_of(world: World, server: str = "alice_server") -> str:
    return f"/api/v1/servers/{world.ids[server]}/allocations"


async def set_port_limit(world: World, limit: int, server: str = "alice_server") -> None:
    """An administrator's doing; it needs no node (no spec changes)."""
    answer = await world.admin.json(
        "PATCH", f"/api/v1/servers/{world.ids[server]}/limits", json={"port_limit": limit}
    )
    assert answer["limits"]["memory_mib"] > 0


def kept_ports(world: World, node: SlowNode) -> list[int]:
    spec = node.kept[uuid.UUID(world.ids["alice_server"])]
    return [a.port for a in spec.allocations]


async def free_ports(world: World) -> list[int]:
    async with transaction(session_factory(world.panel.server.app[ENGINE])) as db:
        rows = await db.scalars(
            select(Allocation.port).where(Allocation.server_id.is_(None)).order_by(Allocation.port)
        )
        return list(rows)


async def test_users_take_free_ports_up_to_the_limit_and_give_them_back(
    stack: tuple[World, SlowNode],
) -> None:
    world, node = stack
    base = ports_of(world)
    mine = world.ids["alice_allocation"]
    listed = await world.alice.json("GET", base)
    assert listed["port_limit"] == 0
    # Without a limit the host decides the ports: taking and giving back are refused.
    refused = await world.alice.json("POST", base, status=409)
    assert "port limit is 0" in refused["error"]["message"]
    await world.alice.json("DELETE", f"{base}/{mine}", status=409)
    assert not node.taken

    await set_port_limit(world, 3)
    trail = await world.admin.json("GET", "/api/v1/audit?action=server.limits.updated")
    assert trail["data"][0]["details"]["from"]["port_limit"] == 0
    assert trail["data"][0]["details"]["to"]["port_limit"] == 3
    assert (await world.alice.json("GET", base))["port_limit"] == 3
    free = await free_ports(world)

    first = await world.alice.json("POST", base, status=201)
    assert first["ip"] == "127.0.0.1"
    assert (first["port"], first["notes"], first["primary"]) == (free[0], None, False)
    second = await world.alice.json("POST", base, status=201)
    assert second["port"] == free[1]
    # The node has every port from the next start on, the main one first.
    assert kept_ports(world, node) == [30000, free[0], free[1]]
    full = await world.alice.json("POST", base, status=409)
    assert "holds 3 ports, its limit" in full["error"]["message"]
    shown = (await world.alice.json("GET", base))["data"]
    assert [(p["port"], p["primary"]) for p in shown] == [
        (30000, True),
        (free[0], False),
        (free[1], False),
    ]

    # The main port is never given back; another one is, its notes with it, once the game
    # no longer listens on it.
    main_refused = await world.alice.json("DELETE", f"{base}/{mine}", status=409)
    assert "main port cannot be given back" in main_refused["error"]["message"]
    for state in ("starting", "running", "stopping"):
        await set_state(world, state)
        running = await world.alice.json("DELETE", f"{base}/{first['id']}", status=409)
        assert f"the server is {state}: stop it first" in running["error"]["message"]
    await set_state(world, "offline")
    await world.alice.json("PATCH", f"{base}/{first['id']}", json={"notes": "voice"})
    await world.alice.json("DELETE", f"{base}/{first['id']}", status=204)
    assert kept_ports(world, node) == [30000, free[1]]
    assert free[0] in await free_ports(world)
    again = await world.alice.json("DELETE", f"{base}/{first['id']}", status=404)
    assert again["error"]["message"] == "no such port on this server"
    # Taken again, it comes without the notes it had.
    retaken = await world.alice.json("POST", base, status=201)
    assert (retaken["port"], retaken["notes"]) == (free[0], None)

    # Another server's port, and a free one, are not this server's to give back.
    async with transaction(session_factory(world.panel.server.app[ENGINE])) as db:
        still_free = await db.scalar(select(Allocation.id).where(Allocation.server_id.is_(None)))
    for other in (world.ids["bob_allocation"], str(still_free)):
        await world.alice.json("DELETE", f"{base}/{other}", status=404)
    created = await world.admin.json("GET", "/api/v1/audit?action=server.allocation.created")
    deleted = await world.admin.json("GET", "/api/v1/audit?action=server.allocation.deleted")
    assert created["meta"]["total"] == 3
    assert deleted["data"][0]["details"] == {"allocation": f"127.0.0.1:{free[0]}"}


async def test_a_new_port_numbered_below_the_main_one_leaves_the_main_one(
    stack: tuple[World, SlowNode],
) -> None:
    world, node = stack
    base = ports_of(world)
    # Alice's server moves to the node's highest port; the lowest ones are free then.
    highest = (await free_ports(world))[-1]
    async with transaction(session_factory(world.panel.server.app[ENGINE])) as db:
        await db.execute(
            update(Allocation)
            .where(Allocation.server_id == uuid.UUID(world.ids["alice_server"]))
            .values(server_id=None)
        )
        await db.execute(
            update(Allocation)
            .where(Allocation.port == highest)
            .values(server_id=uuid.UUID(world.ids["alice_server"]))
        )
    await set_port_limit(world, 2)
    lower = await world.alice.json("POST", base, status=201)
    assert lower["port"] < highest
    shown = (await world.alice.json("GET", base))["data"]
    assert [(p["port"], p["primary"]) for p in shown] == [(highest, True), (lower["port"], False)]
    assert kept_ports(world, node) == [highest, lower["port"]]
    spec = node.kept[uuid.UUID(world.ids["alice_server"])]
    assert spec.startup[spec.startup.index("--port") + 1] == str(highest)


async def test_a_node_that_refuses_or_cannot_be_reached_leaves_the_ports_as_they_were(
    stack: tuple[World, SlowNode],
) -> None:
    world, node = stack
    base = ports_of(world)
    await set_port_limit(world, 3)
    kept = await world.alice.json("POST", base, status=201)
    before = (await world.alice.json("GET", base))["data"]
    free = await free_ports(world)

    node.spec_refusal = "the disk is read-only"
    refused = await world.alice.json("POST", base, status=409)
    assert "read-only" in refused["error"]["message"]
    await world.alice.json("DELETE", f"{base}/{kept['id']}", status=409)
    assert (await world.alice.json("GET", base))["data"] == before
    assert await free_ports(world) == free

    await world.admin.json(
        "PATCH", f"/api/v1/nodes/{world.ids['node']}", json={"url": "http://127.0.0.1:9"}
    )
    await world.alice.json("POST", base, status=503)
    await world.alice.json("DELETE", f"{base}/{kept['id']}", status=503)
    assert (await world.alice.json("GET", base))["data"] == before
    assert await free_ports(world) == free
    for action in ("created", "deleted"):
        trail = await world.admin.json("GET", f"/api/v1/audit?action=server.allocation.{action}")
        assert trail["meta"]["total"] == (1 if action == "created" else 0)


async def test_two_ports_taken_at_once_are_two_ports_and_the_limit_holds(
    stack: tuple[World, SlowNode],
) -> None:
    world, node = stack
    base = ports_of(world)
    await set_port_limit(world, 3)
    node.holding = True
    racing = [asyncio.create_task(world.alice.request("POST", base)) for _ in range(2)]
    await all_held(node, 2)
    await node.let_through()
    answers = [await task for task in racing]
    assert [a.status for a in answers] == [201, 201]
    ports = {(await a.json())["port"] for a in answers}
    assert len(ports) == 2
    assert sorted(kept_ports(world, node)[1:]) == sorted(ports)
    # One more fits; of two more at once, one is refused at the limit.
    await set_port_limit(world, 4)
    node.holding = False
    both = await asyncio.gather(*(world.alice.request("POST", base) for _ in range(2)))
    assert sorted(a.status for a in both) == [201, 409]
    assert len((await world.alice.json("GET", base))["data"]) == 4


async def test_sub_users_need_allocations_create_and_delete(stack: tuple[World, SlowNode]) -> None:
    world, _node = stack
    base = ports_of(world)
    await set_port_limit(world, 3)
    await set_permissions(world, ["allocations.read", "allocations.update"])
    await world.carol.json("POST", base, status=403)
    await set_permissions(world, ["allocations.read", "allocations.create"])
    taken = await world.carol.json("POST", base, status=201)
    await world.carol.json("DELETE", f"{base}/{taken['id']}", status=403)
    await set_permissions(world, ["allocations.read", "allocations.delete"])
    await world.carol.json("DELETE", f"{base}/{taken['id']}", status=204)
    # Someone with no access to the server: 404 whatever they ask.
    await world.bob.json("POST", base, status=404)
    # Only an administrator sets the limit.
    await world.alice.json(
        "PATCH",
        f"/api/v1/servers/{world.ids['alice_server']}/limits",
        status=403,
        json={"port_limit": 10},
    )
    too_many = await world.admin.json(
        "PATCH",
        f"/api/v1/servers/{world.ids['alice_server']}/limits",
        status=400,
        json={"port_limit": 65},
    )
    assert too_many["error"]["details"][0]["loc"] == ["port_limit"]


async def test_pterodactyls_api_sets_the_limit_and_its_client_takes_and_gives_back_ports(
    stack: tuple[World, SlowNode],
) -> None:
    world, node = stack
    application = await pterodactyl_key(world.panel, world.admin, "application")
    client = await pterodactyl_key(world.panel, world.alice, "client")
    identifier = world.compat_ids["client"]["alice_server"]
    number = world.compat_ids["application"]["alice_server"]
    network = f"/api/client/servers/{identifier}/network/allocations"

    no_limit = await client.json("POST", network, status=400)
    assert no_limit["errors"][0]["code"] == "DisplayException"
    await application.json(
        "PATCH",
        f"/api/application/servers/{number}/build",
        json={
            "allocation": int(world.compat_ids["client"]["alice_allocation"]),
            "memory": 512,
            "swap": 0,
            "disk": 1024,
            "io": 500,
            "cpu": 100,
            "feature_limits": {"databases": 0, "allocations": 2, "backups": 1},
        },
    )
    trail = await world.admin.json("GET", "/api/v1/audit?action=server.limits.updated")
    assert trail["data"][0]["details"]["to"]["port_limit"] == 2
    server = await client.json("GET", f"/api/client/servers/{identifier}")
    assert server["attributes"]["feature_limits"]["allocations"] == 2
    listed = await client.json("GET", "/api/client")
    (shown,) = [
        s["attributes"] for s in listed["data"] if s["attributes"]["identifier"] == identifier
    ]
    assert shown["feature_limits"]["allocations"] == 2
    app_view = await application.json("GET", f"/api/application/servers/{number}")
    assert app_view["attributes"]["feature_limits"]["allocations"] == 2

    taken = await client.json("POST", network)
    assert taken["object"] == "allocation"
    assert taken["attributes"]["is_default"] is False
    assert taken["attributes"]["port"] in kept_ports(world, node)
    full = await client.json("POST", network, status=400)
    assert "its limit" in full["errors"][0]["detail"]
    main = world.compat_ids["client"]["alice_allocation"]
    primary = await client.json("DELETE", f"{network}/{main}", status=400)
    assert "main port" in primary["errors"][0]["detail"]
    await client.json("DELETE", f"{network}/{taken['attributes']['id']}", status=204)
    assert len((await client.json("GET", network))["data"]) == 1
    # More than one spec holds (64 ports): the limit is 64.
    await application.json(
        "PATCH",
        f"/api/application/servers/{number}/build",
        json={"feature_limits": {"databases": 0, "allocations": 100, "backups": 1}},
    )
    assert (await world.alice.json("GET", ports_of(world)))["port_limit"] == 64


async def test_one_port_given_back_twice_at_once_is_given_back_once(
    stack: tuple[World, SlowNode],
) -> None:
    """Two requests at once for one port, on both APIs: the decision is taken under the
    node's and the server's locks, so while the node holds the first one's spec the second
    finds the port given back already: one 204, one 404, one audit entry each time."""
    world, node = stack
    await set_port_limit(world, 3)
    base = ports_of(world)
    client = await pterodactyl_key(world.panel, world.alice, "client")
    identifier = world.compat_ids["client"]["alice_server"]
    network = f"/api/client/servers/{identifier}/network/allocations"
    for round_ in range(2):
        taken = await world.alice.json("POST", base, status=201)
        if round_ == 0:
            paths = [f"{base}/{taken['id']}"] * 2
            senders = [world.alice, world.alice]
        else:
            async with transaction(session_factory(world.panel.server.app[ENGINE])) as db:
                number = await db.scalar(
                    select(Allocation.compat_id).where(Allocation.id == uuid.UUID(taken["id"]))
                )
            paths = [f"{network}/{number}"] * 2
            senders = [client, client]
        node.holding = True
        racing = [
            asyncio.create_task(who.request("DELETE", path))
            for who, path in zip(senders, paths, strict=True)
        ]
        await all_held(node, 1)
        await node.let_through()
        answers = [await task for task in racing]
        assert sorted(a.status for a in answers) == [204, 404]
        node.held.clear()
    trail = await world.admin.json("GET", "/api/v1/audit?action=server.allocation.deleted")
    assert trail["meta"]["total"] == 2
    assert [p["port"] for p in (await world.alice.json("GET", base))["data"]] == [30000]
