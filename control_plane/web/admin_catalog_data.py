"""What the admin pages for blueprints, servers and the audit trail read: plain rows for the
templates, one statement or two each (the pages act only through the JSON API)."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.models import Allocation, AuditEntry, Blueprint, Location, Node, Server, User

# The owner picker lists this many users; a bigger panel narrows them with ``owner_search``.
MAX_OWNER_CHOICES: Final = 500


@dataclass(frozen=True)
class ServerRow:
    id: uuid.UUID
    name: str
    state: str
    suspended: bool
    owner_email: str
    node_name: str
    blueprint_name: str
    memory_mib: int
    disk_mib: int
    created_at: dt.datetime


@dataclass(frozen=True)
class ServerPage:
    rows: list[ServerRow]
    total: int


async def server_page(db: AsyncSession, search: str, *, offset: int, limit: int) -> ServerPage:
    """Every server (whoever owns it) whose name or owner's e-mail contains ``search``,
    by name."""
    statement = (
        select(
            Server.id,
            Server.name,
            Server.state,
            Server.suspended,
            User.email,
            Node.name,
            Blueprint.name,
            Server.memory_mib,
            Server.disk_mib,
            Server.created_at,
        )
        .join(User, User.id == Server.owner_id)
        .join(Node, Node.id == Server.node_id)
        .join(Blueprint, Blueprint.id == Server.blueprint_id)
    )
    if search:
        needle = f"%{_escape_like(search.lower())}%"
        statement = statement.where(
            or_(
                func.lower(Server.name).like(needle, escape="\\"),
                func.lower(User.email).like(needle, escape="\\"),
            )
        )
    total = await db.scalar(select(func.count()).select_from(statement.subquery())) or 0
    rows = await db.execute(statement.order_by(Server.name, Server.id).offset(offset).limit(limit))
    return ServerPage([ServerRow(*tuple(row)) for row in rows], total)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


@dataclass(frozen=True)
class BlueprintRow:
    id: uuid.UUID
    name: str
    author: str
    egg_uuid: str | None
    images: list[dict[str, str]]
    servers: int
    created_at: dt.datetime


async def blueprint_rows(db: AsyncSession) -> list[BlueprintRow]:
    """Every blueprint by name, with how many servers use it."""
    used = (
        select(Server.blueprint_id, func.count().label("n"))
        .group_by(Server.blueprint_id)
        .subquery()
    )
    rows = await db.execute(
        select(
            Blueprint.id,
            Blueprint.name,
            Blueprint.author,
            Blueprint.egg_uuid,
            Blueprint.images,
            func.coalesce(used.c.n, 0),
            Blueprint.created_at,
        )
        .outerjoin(used, used.c.blueprint_id == Blueprint.id)
        .order_by(Blueprint.name, Blueprint.id)
    )
    return [BlueprintRow(*tuple(row)) for row in rows]


async def servers_using(db: AsyncSession, blueprint_id: uuid.UUID) -> int:
    return await db.scalar(select(func.count()).where(Server.blueprint_id == blueprint_id)) or 0


@dataclass(frozen=True)
class Choices:
    """What the create-a-server form offers."""

    owners: list[dict[str, str]]
    blueprints: list[dict[str, str]]
    nodes: list[dict[str, Any]]
    locations: list[dict[str, str]]


async def server_choices(db: AsyncSession) -> Choices:
    owners = await db.execute(
        select(User.id, User.email)
        .where(User.disabled.is_(False))
        .order_by(User.email)
        .limit(MAX_OWNER_CHOICES)
    )
    blueprints = await db.execute(select(Blueprint.id, Blueprint.name).order_by(Blueprint.name))
    free = await db.execute(
        select(Allocation.id, Allocation.node_id, Allocation.ip, Allocation.port)
        .where(Allocation.server_id.is_(None))
        .order_by(Allocation.ip, Allocation.port)
    )
    ports: dict[uuid.UUID, list[dict[str, str]]] = {}
    for allocation_id, node_id, ip, port in free:
        ports.setdefault(node_id, []).append({"id": str(allocation_id), "label": f"{ip}:{port}"})
    nodes = await db.execute(select(Node.id, Node.name, Node.status).order_by(Node.name))
    locations = await db.execute(select(Location.id, Location.code).order_by(Location.code))
    return Choices(
        owners=[{"id": str(i), "email": e} for i, e in owners],
        blueprints=[{"id": str(i), "name": n} for i, n in blueprints],
        nodes=[
            {"id": str(i), "name": n, "status": s, "free": ports.get(i, [])} for i, n, s in nodes
        ],
        locations=[{"id": str(i), "code": c} for i, c in locations],
    )


async def user_id_of(db: AsyncSession, email: str) -> uuid.UUID | None:
    return await db.scalar(select(User.id).where(func.lower(User.email) == email.lower()))


async def audit_actions(db: AsyncSession) -> list[str]:
    """The actions recorded so far (the action filter's suggestions)."""
    return list(await db.scalars(select(AuditEntry.action).distinct().order_by(AuditEntry.action)))
