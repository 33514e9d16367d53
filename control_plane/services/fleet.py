"""What an administrator sees of the whole installation at a glance: how many of each
record, servers by state, and each node's share of memory and disk promised to servers."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.models import Allocation, Location, Node, Server, User


@dataclass(frozen=True)
class NodeUsage:
    """What a node's servers were given (MiB), and how many servers and ports it has."""

    servers: int = 0
    memory_mib: int = 0
    disk_mib: int = 0
    allocations: int = 0
    allocations_used: int = 0


@dataclass(frozen=True)
class Counts:
    users: int
    servers: int
    nodes: int
    locations: int
    suspended: int


async def counts(db: AsyncSession) -> Counts:
    async def count(model: type[User | Server | Node | Location]) -> int:
        return int(await db.scalar(select(func.count()).select_from(model)) or 0)

    suspended = await db.scalar(select(func.count()).where(Server.suspended.is_(True)))
    return Counts(
        users=await count(User),
        servers=await count(Server),
        nodes=await count(Node),
        locations=await count(Location),
        suspended=int(suspended or 0),
    )


async def servers_by_state(db: AsyncSession) -> list[tuple[str, int]]:
    """``(state, how many servers)``, most common first."""
    rows = await db.execute(
        select(Server.state, func.count()).group_by(Server.state).order_by(func.count().desc())
    )
    return [(str(state), int(number)) for state, number in rows]


async def node_usage(db: AsyncSession) -> dict[uuid.UUID, NodeUsage]:
    """Per node: its servers' memory and disk, and its ports (used and all)."""
    servers = await db.execute(
        select(
            Server.node_id,
            func.count(),
            func.coalesce(func.sum(Server.memory_mib), 0),
            func.coalesce(func.sum(Server.disk_mib), 0),
        ).group_by(Server.node_id)
    )
    ports = await db.execute(
        select(Allocation.node_id, func.count(), func.count(Allocation.server_id)).group_by(
            Allocation.node_id
        )
    )
    port_counts = {node_id: (int(a), int(u)) for node_id, a, u in ports}
    usage = {
        node_id: NodeUsage(int(n), int(memory), int(disk), *port_counts.get(node_id, (0, 0)))
        for node_id, n, memory, disk in servers
    }
    for node_id, (total, used) in port_counts.items():
        usage.setdefault(node_id, NodeUsage(allocations=total, allocations_used=used))
    return usage


async def nodes_per_location(db: AsyncSession) -> dict[uuid.UUID, int]:
    rows = await db.execute(
        select(Node.location_id, func.count())
        .where(Node.location_id.is_not(None))
        .group_by(Node.location_id)
    )
    return {location_id: int(n) for location_id, n in rows if location_id is not None}
