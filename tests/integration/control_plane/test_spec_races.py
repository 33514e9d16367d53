"""Changes of one server's spec made at the same moment, on SQLite and PostgreSQL: a variable,
the main port, the limits and a start. Each route sends the node a whole spec, so two
changes at once each send one made without the other; the node holds both here
(``SlowNode.holding``) and then takes them newest first, so that the older arrives last, as
over a network that held it up. Neither change may be lost, at the node or in the database,
and the node must end with the spec the database describes
(``control_plane/services/servers/spec_changes.py``; the agent's side of the rule is
``tests/integration/node_agent/test_spec_updates.py``)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse
from pytest_aiohttp import AiohttpClient, AiohttpServer
from sqlalchemy import update

from control_plane.db.engine import session_factory
from control_plane.db.models import Allocation, Server
from control_plane.db.session import transaction
from control_plane.keys import ENGINE
from control_plane.services.servers import placement, spec_changes
from shared.server_spec import ServerSpec
from tests.integration.control_plane.test_server_ports import second_port
from tests.integration.control_plane.test_slow_node import stack_with_slow_node
from tests.support.slow_node import SlowNode
from tests.support.world import World

pytestmark = pytest.mark.usefixtures("engine")  # a migrated database of each kind
Stack = tuple[World, SlowNode]


async def stack(
    database_url: str,
    tmp_path: Path,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
) -> Stack:
    world, node = await stack_with_slow_node(database_url, tmp_path, aiohttp_server, aiohttp_client)
    node.delay = 0  # power actions answered at once; only specs are held
    node.holding = True
    return world, node


async def all_held(node: SlowNode, count: int) -> None:
    async with asyncio.timeout(10):
        while len(node.held) < count:
            await asyncio.sleep(0.02)


async def at_once(node: SlowNode, *requests: Any) -> list[ClientResponse]:
    """Send the requests together; once the node holds a spec of each, let every held spec
    through, newest first; their answers."""
    before = len(node.held)
    racing = [asyncio.create_task(request) for request in requests]
    await all_held(node, before + len(racing))
    await node.let_through()
    return [await task for task in racing]


def kept(world: World, node: SlowNode, server: str = "alice_server") -> ServerSpec:
    return node.kept[uuid.UUID(world.ids[server])]


def startup_of(world: World) -> str:
    return f"/api/v1/servers/{world.ids['alice_server']}/startup"


def ports_of(world: World) -> str:
    return f"/api/v1/servers/{world.ids['alice_server']}/allocations"


async def motd_shown(world: World) -> str:
    variables = (await world.alice.json("GET", startup_of(world)))["variables"]
    return str(next(v["value"] for v in variables if v["env"] == "MOTD"))


async def test_a_variable_and_a_main_port_changed_at_once_both_reach_the_node(
    database_url: str,
    tmp_path: Path,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
) -> None:
    world, node = await stack(database_url, tmp_path, aiohttp_server, aiohttp_client)
    other, _ = await second_port(world)
    answers = await at_once(
        node,
        world.alice.request("PATCH", startup_of(world), json={"variables": {"MOTD": "both"}}),
        world.alice.request("PATCH", f"{ports_of(world)}/{other}", json={"primary": True}),
    )
    assert [a.status for a in answers] == [200, 200], [await a.text() for a in answers]
    ports = (await world.alice.json("GET", ports_of(world)))["data"]
    assert (ports[0]["id"], ports[0]["primary"]) == (other, True)
    assert await motd_shown(world) == "both"
    spec = kept(world, node)
    assert spec.environment["MOTD"] == "both"
    assert spec.primary_allocation is not None
    assert spec.primary_allocation.port == ports[0]["port"]
    assert spec.startup[spec.startup.index("--port") + 1] == str(ports[0]["port"])


async def test_two_new_main_ports_at_once_leave_one_main_port_the_node_has_too(
    database_url: str,
    tmp_path: Path,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
) -> None:
    """Both users get their change (the one sent first is made again after the other), and
    the node's main port is the one the panel shows."""
    world, node = await stack(database_url, tmp_path, aiohttp_server, aiohttp_client)
    first, _ = await second_port(world)
    second, _ = await second_port(world)
    answers = await at_once(
        node,
        *[
            world.alice.request("PATCH", f"{ports_of(world)}/{port}", json={"primary": True})
            for port in (first, second)
        ],
    )
    assert [a.status for a in answers] == [200, 200], [await a.text() for a in answers]
    ports = (await world.alice.json("GET", ports_of(world)))["data"]
    assert [p["primary"] for p in ports] == [True, False, False]
    assert ports[0]["id"] in (first, second)
    main = kept(world, node).primary_allocation
    assert main is not None
    assert main.port == ports[0]["port"]


async def test_limits_and_a_variable_changed_at_once_both_reach_the_node(
    database_url: str,
    tmp_path: Path,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
) -> None:
    """The limits are stored before they are sent (they hold the node's room), the variable
    after: both kinds, at once."""
    world, node = await stack(database_url, tmp_path, aiohttp_server, aiohttp_client)
    server = world.ids["alice_server"]
    answers = await at_once(
        node,
        world.admin.request("PATCH", f"/api/v1/servers/{server}/limits", json={"memory_mib": 777}),
        world.alice.request("PATCH", startup_of(world), json={"variables": {"MOTD": "limits"}}),
    )
    assert [a.status for a in answers] == [200, 200], [await a.text() for a in answers]
    assert (await world.admin.json("GET", f"/api/v1/servers/{server}"))["limits"][
        "memory_mib"
    ] == 777
    assert await motd_shown(world) == "limits"
    spec = kept(world, node)
    assert (spec.memory_mib, spec.environment["MOTD"]) == (777, "limits")


async def test_a_start_while_a_change_is_on_its_way_starts_with_the_change(
    database_url: str,
    tmp_path: Path,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
) -> None:
    """The start's spec (made before the change was stored) goes out after the change's: the
    change is sent again after it, and the node ends with it."""
    world, node = await stack(database_url, tmp_path, aiohttp_server, aiohttp_client)
    server = world.ids["alice_server"]
    change = asyncio.create_task(
        world.alice.request("PATCH", startup_of(world), json={"variables": {"MOTD": "late"}})
    )
    await all_held(node, 1)
    answers = await at_once(
        node,
        world.alice.request("POST", f"/api/v1/servers/{server}/power", json={"action": "start"}),
    )
    assert answers[0].status == 202, await answers[0].text()
    assert (await change).status == 200, await (await change).text()
    assert await motd_shown(world) == "late"
    assert kept(world, node).environment["MOTD"] == "late"
    # The start's spec was numbered after the change's first send, which the node then
    # ignored; the change's second send came after both.
    assert [spec.environment["MOTD"] for spec in node.taken] == ["hello", "late", "late"]
    assert [spec.revision for spec in node.taken] == [2, 1, 3]


async def test_a_database_restored_from_an_older_backup_numbers_above_the_nodes_spec(
    database_url: str,
    tmp_path: Path,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
) -> None:
    """The node keeps a spec numbered beyond any the restored database knows of: a change
    is numbered above it, not ignored by the node while the panel stores it."""
    world, node = await stack(database_url, tmp_path, aiohttp_server, aiohttp_client)
    node.holding = False
    server = world.ids["alice_server"]
    for motd in ("one", "two", "three"):
        await world.alice.json("PATCH", startup_of(world), json={"variables": {"MOTD": motd}})
    assert kept(world, node).revision == 3
    async with transaction(session_factory(world.panel.server.app[ENGINE])) as db:
        await db.execute(
            update(Server).where(Server.id == uuid.UUID(server)).values(spec_revision=1)
        )
    await world.alice.json("PATCH", startup_of(world), json={"variables": {"MOTD": "restored"}})
    assert await motd_shown(world) == "restored"
    assert (kept(world, node).environment["MOTD"], kept(world, node).revision) == ("restored", 4)


async def test_limits_the_node_took_but_whose_disk_it_refused_are_put_back_there_too(
    database_url: str,
    tmp_path: Path,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
) -> None:
    """This node serves no disk resize: the spec with the new limits is taken, the disk is
    refused; the old limits are stored again and the node is given them again."""
    world, node = await stack(database_url, tmp_path, aiohttp_server, aiohttp_client)
    node.holding = False
    server = world.ids["alice_server"]
    before = (await world.admin.json("GET", f"/api/v1/servers/{server}"))["limits"]
    refused = await world.admin.request(
        "PATCH",
        f"/api/v1/servers/{server}/limits",
        json={"memory_mib": 777, "disk_mib": before["disk_mib"] + 100},
    )
    assert refused.status >= 400, await refused.text()
    assert (await world.admin.json("GET", f"/api/v1/servers/{server}"))["limits"] == before
    assert [spec.memory_mib for spec in node.taken] == [777, before["memory_mib"]]
    assert kept(world, node).memory_mib == before["memory_mib"]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_a_spec_sends_lock_on_the_node_lets_a_change_of_the_servers_ports_through(
    world: World,
) -> None:
    """The deadlock a CI run found: a spec being numbered holds the node's row and waits for
    the server's; a main-port change holds the server's row and updates its ports, whose
    trigger updates the server's row once per port, and from the second on PostgreSQL
    checks the server's foreign key to the node, which a FOR UPDATE lock on the node's row
    blocked. The node is locked FOR NO KEY UPDATE now: the check goes through."""
    factory = session_factory(world.panel.server.app[ENGINE])
    server_id = uuid.UUID(world.ids["alice_server"])
    other, _ = await second_port(world)

    async def change_ports() -> None:
        async with transaction(factory) as db:
            await spec_changes.locked_server(db, server_id)
            await db.execute(
                update(Allocation)
                .where(Allocation.server_id == server_id)
                .values(is_primary=Allocation.id == uuid.UUID(other))
            )

    async with transaction(factory) as holder:
        await placement.lock_node(holder, uuid.UUID(world.ids["node"]))
        await asyncio.wait_for(change_ports(), 5)
