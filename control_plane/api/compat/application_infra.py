"""``/api/application`` locations, nodes (and their allocations), nests and eggs.

Our blueprints are Pterodactyl's eggs, all in one nest ("Imported", id 1).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from control_plane.api.compat.envelope import CompatObject, CompatQuery, collection, item, page
from control_plane.api.compat.ids import APPLICATION_IDS
from control_plane.api.compat.transform import (
    allocation_attributes,
    egg_attributes,
    location_attributes,
    nest_attributes,
    node_attributes,
    node_use,
    variable_attributes,
)
from control_plane.api.routing import Access, ApiRequest, ApiRoutes
from control_plane.db.models import Allocation, Blueprint, Location, Node
from control_plane.errors import NotFound
from control_plane.schemas.compat import DeployableQuery
from control_plane.services import records
from control_plane.services.servers.placement import has_room

routes = ApiRoutes("pterodactyl application", access=Access.ADMIN, path_ids=APPLICATION_IDS)
ROOT = "/api/application"


@routes.get(
    ROOT + "/locations",
    summary="Pterodactyl: list locations",
    query=CompatQuery,
    response=CompatObject,
)
async def list_locations(req: ApiRequest[Any, CompatQuery]) -> dict[str, Any]:
    q = req.query
    total = await req.db.scalar(select(func.count()).select_from(Location)) or 0
    rows = await req.db.scalars(
        select(Location).order_by(Location.compat_id).offset(q.offset).limit(q.per_page)
    )
    return page(req, [item("location", location_attributes(r)) for r in rows], total)


@routes.get(
    ROOT + "/locations/{location_id}",
    summary="Pterodactyl: get a location",
    query=CompatQuery,
    response=CompatObject,
)
async def get_location(req: ApiRequest[Any, CompatQuery]) -> dict[str, Any]:
    location = await records.get_or_404(req.db, Location, req.uuid_param("location_id"), "location")
    return item("location", location_attributes(location))


async def _nodes(req: ApiRequest[Any, Any], nodes: list[Node]) -> list[dict[str, Any]]:
    """Nodes as Pterodactyl shows them, with ``include=allocations,location``."""
    wanted = req.query.includes("allocations", "location")
    use = await node_use(req.db, [n.id for n in nodes])
    locations = {
        loc.id: loc
        for loc in await req.db.scalars(
            select(Location).where(Location.id.in_([n.location_id for n in nodes]))
        )
    }
    answers = []
    for node in nodes:
        location = locations.get(node.location_id) if node.location_id else None
        attributes = node_attributes(
            node, location.compat_id if location else None, use.get(node.id)
        )
        relationships: dict[str, Any] = {}
        if "allocations" in wanted:
            allocations = await req.db.scalars(
                select(Allocation).where(Allocation.node_id == node.id).order_by(Allocation.port)
            )
            relationships["allocations"] = collection(
                "allocation", [allocation_attributes(a) for a in allocations]
            )
        if "location" in wanted and location is not None:
            relationships["location"] = item("location", location_attributes(location))
        answers.append(item("node", attributes, **relationships))
    return answers


@routes.get(
    ROOT + "/nodes", summary="Pterodactyl: list nodes", query=CompatQuery, response=CompatObject
)
async def list_nodes(req: ApiRequest[Any, CompatQuery]) -> dict[str, Any]:
    q = req.query
    total = await req.db.scalar(select(func.count()).select_from(Node)) or 0
    rows = list(
        await req.db.scalars(
            select(Node).order_by(Node.compat_id).offset(q.offset).limit(q.per_page)
        )
    )
    return page(req, await _nodes(req, rows), total)


@routes.get(
    ROOT + "/nodes/deployable",
    summary="Pterodactyl: nodes with room for this memory and disk (in these locations)",
    query=DeployableQuery,
    response=CompatObject,
)
async def deployable_nodes(req: ApiRequest[Any, DeployableQuery]) -> dict[str, Any]:
    q = req.query
    statement = select(Node).order_by(Node.compat_id)
    if q.location_ids:
        statement = statement.join(Location, Location.id == Node.location_id).where(
            Location.compat_id.in_(q.location_ids)
        )
    fitting = [
        node
        for node in await req.db.scalars(statement)
        if await has_room(req.db, node, q.memory, q.disk)
    ]
    shown = fitting[q.offset : q.offset + q.per_page]
    return page(req, await _nodes(req, shown), len(fitting))


@routes.get(
    ROOT + "/nodes/{node_id}",
    summary="Pterodactyl: get a node",
    query=CompatQuery,
    response=CompatObject,
)
async def get_node(req: ApiRequest[Any, CompatQuery]) -> dict[str, Any]:
    node = await records.get_or_404(req.db, Node, req.uuid_param("node_id"), "node")
    return (await _nodes(req, [node]))[0]


@routes.get(
    ROOT + "/nodes/{node_id}/allocations",
    summary="Pterodactyl: list a node's allocations",
    query=CompatQuery,
    response=CompatObject,
)
async def list_allocations(req: ApiRequest[Any, CompatQuery]) -> dict[str, Any]:
    node = await records.get_or_404(req.db, Node, req.uuid_param("node_id"), "node")
    q = req.query
    mine = select(Allocation).where(Allocation.node_id == node.id)
    total = await req.db.scalar(select(func.count()).select_from(mine.subquery())) or 0
    rows = await req.db.scalars(mine.order_by(Allocation.port).offset(q.offset).limit(q.per_page))
    return page(req, [item("allocation", allocation_attributes(a)) for a in rows], total)


@routes.get(
    ROOT + "/nests", summary="Pterodactyl: list nests", query=CompatQuery, response=CompatObject
)
async def list_nests(req: ApiRequest[Any, CompatQuery]) -> dict[str, Any]:
    return page(req, [item("nest", nest_attributes())], 1)


@routes.get(
    ROOT + "/nests/{nest_id}",
    summary="Pterodactyl: get a nest",
    query=CompatQuery,
    response=CompatObject,
)
async def get_nest(req: ApiRequest[Any, CompatQuery]) -> dict[str, Any]:
    await _the_nest(req)
    return item("nest", nest_attributes())


async def _the_nest(req: ApiRequest[Any, Any]) -> None:
    if req.uuid_param("nest_id").int == 0:
        raise NotFound("no such nest")


def _egg(blueprint: Blueprint, wanted: frozenset[str]) -> dict[str, Any]:
    relationships: dict[str, Any] = {}
    if "variables" in wanted:
        relationships["variables"] = collection(
            "egg_variable",
            [variable_attributes(blueprint, i, v) for i, v in enumerate(blueprint.variables)],
        )
    if "nest" in wanted:
        relationships["nest"] = item("nest", nest_attributes())
    return item("egg", egg_attributes(blueprint), **relationships)


@routes.get(
    ROOT + "/nests/{nest_id}/eggs",
    summary="Pterodactyl: list a nest's eggs (our blueprints)",
    query=CompatQuery,
    response=CompatObject,
)
async def list_eggs(req: ApiRequest[Any, CompatQuery]) -> dict[str, Any]:
    await _the_nest(req)
    wanted = req.query.includes("variables", "nest")
    rows = list(await req.db.scalars(select(Blueprint).order_by(Blueprint.compat_id)))
    shown = rows[req.query.offset : req.query.offset + req.query.per_page]
    return page(req, [_egg(b, wanted) for b in shown], len(rows))


@routes.get(
    ROOT + "/nests/{nest_id}/eggs/{egg_id}",
    summary="Pterodactyl: get an egg (?include=variables)",
    query=CompatQuery,
    response=CompatObject,
)
async def get_egg(req: ApiRequest[Any, CompatQuery]) -> dict[str, Any]:
    await _the_nest(req)
    blueprint = await records.get_or_404(req.db, Blueprint, req.uuid_param("egg_id"), "egg")
    return _egg(blueprint, req.query.includes("variables", "nest"))
