"""Where a server goes: a node with room for its limits, and a port of that node taken for
it atomically."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.models import Allocation, Blueprint, Node, Server, User
from control_plane.errors import Conflict, InvalidRequest, NotFound
from control_plane.services.servers.variables import validate_variables


@dataclass(frozen=True)
class ServerLimits:
    memory_mib: int
    swap_mib: int
    cpu_percent: int
    disk_mib: int
    pids_limit: int


async def lock_node(db: AsyncSession, node_id: uuid.UUID) -> Node:
    """The node's row, locked until the transaction ends (PostgreSQL; SQLite transactions are
    serial already): concurrent creates on one node queue here, so capacity and ports are
    decided one at a time. A node's row is locked before any of its servers' rows, as the
    node's event stream updates them (its cursor, then the server's state)."""
    # FOR NO KEY UPDATE: it queues creates and spec sends of the node, not the foreign-key
    # checks of rows that name the node (a port's update takes one while the server's row
    # is locked: a plain FOR UPDATE here waited on it, and it on this, a deadlock).
    node = await db.scalar(select(Node).where(Node.id == node_id).with_for_update(key_share=True))
    if node is None:
        raise NotFound("no such node")
    return node


async def _check_capacity(
    db: AsyncSession, node: Node, limits: ServerLimits, excluding: uuid.UUID | None = None
) -> None:
    """409 unless ``node`` has room for ``limits`` besides its servers (but ``excluding``)."""
    others = select(
        func.coalesce(func.sum(Server.memory_mib), 0),
        func.coalesce(func.sum(Server.disk_mib), 0),
    ).where(Server.node_id == node.id)
    if excluding is not None:
        others = others.where(Server.id != excluding)
    used_memory, used_disk = (await db.execute(others)).one()
    if node.memory_mib and used_memory + limits.memory_mib > node.memory_mib:
        raise Conflict(f"node {node.name!r} has not enough memory left")
    if node.disk_mib and used_disk + limits.disk_mib > node.disk_mib:
        raise Conflict(f"node {node.name!r} has not enough disk left")


async def check_new_limits(db: AsyncSession, server: Server, limits: ServerLimits) -> None:
    """409 unless the server's node has room for it with ``limits`` instead of its own. The
    node is locked as for a creation (in a write transaction): the caller stores the new
    limits in the same one, so two changes at once cannot both take the last room."""
    node = await lock_node(db, server.node_id)
    await _check_capacity(db, node, limits, excluding=server.id)


async def has_room(db: AsyncSession, node: Node, memory_mib: int, disk_mib: int) -> bool:
    """Whether ``node`` can take a server of this memory and disk (the rule creates obey)."""
    try:
        await _check_capacity(db, node, ServerLimits(memory_mib, 0, 0, disk_mib, 0))
    except Conflict:
        return False
    return True


async def pick_node(
    db: AsyncSession, location_ids: list[uuid.UUID] | None, limits: ServerLimits
) -> uuid.UUID:
    """An online node in one of the locations (any location for None) with room for
    ``limits`` and a free port."""
    statement = select(Node).order_by(Node.created_at)
    if location_ids is not None:
        statement = statement.where(Node.location_id.in_(location_ids))
    nodes = list(await db.scalars(statement))
    for node in sorted(nodes, key=lambda n: n.status != "online"):
        try:
            await _check_capacity(db, node, limits)
        except Conflict:
            continue
        free = await db.scalar(
            select(func.count()).where(
                Allocation.node_id == node.id, Allocation.server_id.is_(None)
            )
        )
        if free:
            return node.id
    raise Conflict("no node in this location has room for this server")


async def _take_ports(
    db: AsyncSession, node: Node, server: Server, allocation_ids: list[uuid.UUID] | None
) -> None:
    """Give ``server`` the allocations asked for (free ones of its node; the first is its
    main port), or its node's first free port; atomically (a port another create took
    meanwhile is a 409). Each comes without an earlier holder's notes or choice."""
    if allocation_ids is None:
        free = await db.scalar(
            select(Allocation.id)
            .where(Allocation.node_id == node.id, Allocation.server_id.is_(None))
            .order_by(Allocation.port)
            .limit(1)
        )
        if free is None:
            raise Conflict(f"node {node.name!r} has no free port")
        allocation_ids = [free]
    for index, allocation_id in enumerate(allocation_ids):
        taken = await db.execute(
            update(Allocation)
            .where(
                Allocation.id == allocation_id,
                Allocation.node_id == node.id,
                Allocation.server_id.is_(None),
            )
            .values(server_id=server.id, notes=None, is_primary=index == 0)
        )
        if taken.rowcount != 1:  # type: ignore[attr-defined]
            raise Conflict(f"that allocation of node {node.name!r} is not free")


async def create_server(
    db: AsyncSession,
    *,
    name: str,
    owner: User,
    blueprint: Blueprint,
    node_id: uuid.UUID,
    image: str | None,
    limits: ServerLimits,
    variables: dict[str, str],
    allocation_ids: list[uuid.UUID] | None = None,
) -> Server:
    """Insert the server and give it the allocations asked for (the first is its main port,
    until its users choose another), or one free port of the node, atomically."""
    node = await lock_node(db, node_id)
    await _check_capacity(db, node, limits)
    images = [i["image"] for i in blueprint.images]
    chosen = image or images[0]
    if chosen not in images:
        raise InvalidRequest("image must be one of the blueprint's images")
    server = Server(
        name=name,
        owner_id=owner.id,
        node_id=node.id,
        blueprint_id=blueprint.id,
        image=chosen,
        memory_mib=limits.memory_mib,
        swap_mib=limits.swap_mib,
        cpu_percent=limits.cpu_percent,
        disk_mib=limits.disk_mib,
        pids_limit=limits.pids_limit,
        variables=validate_variables(blueprint, variables, current={}, user=False),
    )
    db.add(server)
    await db.flush()
    await _take_ports(db, node, server, allocation_ids)
    return server


async def allocations_of(db: AsyncSession, server_id: uuid.UUID) -> list[Allocation]:
    """The server's allocations, its main port first (the one chosen, else the lowest),
    then by port."""
    return list(
        await db.scalars(
            select(Allocation)
            .where(Allocation.server_id == server_id)
            .order_by(Allocation.is_primary.desc(), Allocation.port)
        )
    )
