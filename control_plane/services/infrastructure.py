"""Locations, nodes and their allocations."""

from __future__ import annotations

import ipaddress
import uuid

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.models import Allocation, Location, Node, Server
from control_plane.errors import Conflict, InvalidRequest, NotFound
from control_plane.services import records


async def create_location(db: AsyncSession, *, code: str, description: str) -> Location:
    location = Location(code=code, description=description)
    db.add(location)
    try:
        await db.flush()
    except IntegrityError as err:
        raise Conflict(f"a location {code!r} exists already") from err
    return location


async def list_locations(db: AsyncSession) -> list[Location]:
    return await records.listed(db, Location, Location.code)


async def change_location(
    db: AsyncSession, location_id: uuid.UUID, *, code: str | None, description: str | None
) -> Location:
    """Rename a location (its code) or change its description; a code in use is a conflict."""
    location = await records.get_or_404(db, Location, location_id, "location")
    if code is not None and code != location.code:
        taken = await db.scalar(select(Location.id).where(Location.code == code))
        if taken is not None:
            raise Conflict(f"a location {code!r} exists already")
        location.code = code
    if description is not None:
        location.description = description
    try:
        await db.flush()
    except IntegrityError as err:
        raise Conflict(f"a location {code!r} exists already") from err
    return location


async def delete_location(db: AsyncSession, location_id: uuid.UUID) -> Location:
    names = list(
        await db.scalars(
            select(Node.name).where(Node.location_id == location_id).order_by(Node.name).limit(4)
        )
    )
    shown = ", ".join(names[:3]) + (", …" if len(names) > 3 else "")
    in_use = f"the location still has nodes ({shown}); move or delete them first"
    return await records.delete_if_unused(
        db, Location, location_id, "location", [(Node.location_id, in_use)]
    )


async def list_nodes(db: AsyncSession) -> list[Node]:
    return await records.listed(db, Node, Node.name)


async def get_node(db: AsyncSession, node_id: uuid.UUID) -> Node:
    return await records.get_or_404(db, Node, node_id, "node")


async def check_location(db: AsyncSession, location_id: uuid.UUID | None) -> None:
    if location_id is not None and await db.get(Location, location_id) is None:
        raise InvalidRequest("no such location")


async def delete_node(db: AsyncSession, node_id: uuid.UUID) -> Node:
    in_use = "the node still has servers; delete or move them first"
    return await records.delete_if_unused(db, Node, node_id, "node", [(Server.node_id, in_use)])


async def list_allocations(db: AsyncSession, node: Node) -> list[Allocation]:
    return await records.listed(
        db, Allocation, Allocation.ip, Allocation.port, where=Allocation.node_id == node.id
    )


async def add_allocations(
    db: AsyncSession, node: Node, *, ip: str, first: int, last: int
) -> list[Allocation]:
    """Add ports ``first``..``last`` on ``ip``; ports the node already has are a conflict."""
    address = str(ipaddress.ip_address(ip))
    existing = set(
        await db.scalars(
            select(Allocation.port).where(
                Allocation.node_id == node.id,
                Allocation.ip == address,
                Allocation.port.between(first, last),
            )
        )
    )
    if existing:
        raise Conflict(f"ports already allocated on {address}: {sorted(existing)[:10]}")
    rows = [Allocation(node_id=node.id, ip=address, port=p) for p in range(first, last + 1)]
    db.add_all(rows)
    try:
        await db.flush()
    except IntegrityError as err:
        raise Conflict("some of these ports were allocated at the same time") from err
    return rows


async def delete_allocation(db: AsyncSession, node_id: uuid.UUID, allocation_id: uuid.UUID) -> None:
    allocation = await db.get(Allocation, allocation_id)
    if allocation is None or allocation.node_id != node_id:
        raise NotFound("no such allocation")
    if allocation.server_id is not None:
        raise Conflict("a server uses this allocation")
    # Only while it is still free: a server may have taken it since it was read (a user
    # taking a free port, a server made), and a port in use is never deleted under it.
    deleted = await db.execute(
        delete(Allocation)
        .where(Allocation.id == allocation_id, Allocation.server_id.is_(None))
        .execution_options(synchronize_session=False)
    )
    if not getattr(deleted, "rowcount", 0):
        raise Conflict("a server uses this allocation")
    db.expunge(allocation)
