"""Servers: who may see them, their creation (atomic port assignment), their spec for the node."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

from pydantic import ValidationError
from sqlalchemy import (
    Select,
    Uuid,
    and_,
    bindparam,
    func,
    select,
    true,
    type_coerce,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.models import Allocation, Blueprint, Node, Server, Subuser, User
from control_plane.db.models.base import UuidText
from control_plane.db.reader import StatementReader
from control_plane.errors import Conflict, InvalidRequest, NotFound
from control_plane.schemas.blueprints import (
    fill_placeholders,
    startup_words,
    too_long,
    value_problem,
)
from control_plane.security.caller import Caller
from control_plane.security.permissions import ServerAccess
from shared.errors import ErrorDetail
from shared.server_spec import MAX_ARG_LENGTH, InstallSpec, ServerSpec


async def access_for(
    db: AsyncSession, caller: Caller, server_id: uuid.UUID
) -> tuple[Server, ServerAccess] | None:
    """The server and the caller's access to it, or None if the caller may not see it.

    Administrators see every server only through a credential with the ``admin`` scope.
    """
    server = await db.get(Server, server_id)
    if server is None:
        return None
    suspended = server.suspended
    if caller.acts_as_admin:
        return server, ServerAccess(server.id, "admin", frozenset({"*"}), suspended)
    if server.owner_id == caller.user_id:
        return server, ServerAccess(server.id, "owner", frozenset({"*"}), suspended)
    sub = await db.scalar(
        select(Subuser).where(Subuser.server_id == server_id, Subuser.user_id == caller.user_id)
    )
    if sub is None:
        return None
    return server, ServerAccess(server.id, "subuser", frozenset(sub.permissions), suspended)


_CALLER_ID: Final = bindparam("caller_id", type_=Uuid())


class ServerColumns(NamedTuple):
    """What a server list shows of each server: these columns of ``servers``, in this order."""

    id: uuid.UUID | str  # lists read ids as text (see UuidText)
    name: str
    owner_id: uuid.UUID | str
    node_id: uuid.UUID | str
    blueprint_id: uuid.UUID | str
    image: str
    state: str
    suspended: bool
    memory_mib: int
    swap_mib: int
    cpu_percent: int
    disk_mib: int
    pids_limit: int
    created_at: dt.datetime


_LISTED_COLUMNS: Final = tuple(getattr(Server, name) for name in ServerColumns._fields)
# A page's rows: the listed columns, then one allocation's ip and port, the total and (for
# users who are not administrators) their sub-user permissions; read by position (fast).
_LISTED = len(_LISTED_COLUMNS)
_IP, _PORT, _TOTAL, _PERMISSIONS = _LISTED, _LISTED + 1, _LISTED + 2, _LISTED + 3


def _page_statement(*, admin: bool) -> Select[Any]:
    """One page of the servers a caller may see, with its total, ports and the caller's
    sub-user permissions, as one statement (so one snapshot, and no transaction needed).

    Every row is a server of the page joined with one of its allocations (or none); the
    count sits in a one-row subquery that the page is left-joined to, so that a page past
    the end still brings the total.
    """
    page = select(*_LISTED_COLUMNS)
    total = select(func.count().label("total")).select_from(Server)
    if not admin:
        shared = select(Subuser.server_id).where(Subuser.user_id == _CALLER_ID)
        visible = (Server.owner_id == _CALLER_ID) | Server.id.in_(shared)
        page, total = page.where(visible), total.where(visible)
    paged = (
        page.order_by(Server.name, Server.id)
        .limit(bindparam("limit"))
        .offset(bindparam("offset"))
        .subquery("page")
    )
    counted = total.subquery("total")
    joined = counted.outerjoin(paged, true()).outerjoin(
        Allocation, Allocation.server_id == paged.c.id
    )
    # Ids as text: they are only sent on (see UuidText).
    listed = [
        type_coerce(c, UuidText()).label(c.key) if isinstance(c.type, Uuid) else c for c in paged.c
    ]
    columns: list[Any] = [*listed, Allocation.ip, Allocation.port, counted.c.total]
    if not admin:
        joined = joined.outerjoin(
            Subuser, and_(Subuser.server_id == paged.c.id, Subuser.user_id == _CALLER_ID)
        )
        columns.append(Subuser.permissions)
    return select(*columns).select_from(joined).order_by(paged.c.name, paged.c.id, Allocation.port)


# Built once: building a statement costs more than running this one.
_ADMIN_PAGE: Final = _page_statement(admin=True)
_USER_PAGE: Final = _page_statement(admin=False)


class ListedServer(NamedTuple):
    """A server as lists show it."""

    columns: ServerColumns
    # (ip, port) of each allocation, by port.
    allocations: list[tuple[str, int]]
    # ["*"] for owners and administrators, else the sub-user's permission nodes, sorted.
    permissions: list[str]


def listed_server(
    server: Server, allocations: list[Allocation], permissions: list[str]
) -> ListedServer:
    """An entity as lists show it (single-server routes answer the same shape)."""
    return ListedServer(
        ServerColumns._make(getattr(server, name) for name in ServerColumns._fields),
        [(a.ip, a.port) for a in allocations],
        permissions,
    )


@dataclass(frozen=True)
class ServerPage:
    servers: list[ListedServer]
    # How many servers the caller may see in all.
    total: int


async def server_page(
    reader: StatementReader, caller: Caller, *, offset: int, limit: int
) -> ServerPage:
    """The servers a caller may list (all for those acting as administrators, else owned or
    shared with them), ordered by name, one page of them, in one statement."""
    statement = _ADMIN_PAGE if caller.acts_as_admin else _USER_PAGE
    rows = await reader.rows(
        statement, {"caller_id": caller.user_id, "limit": limit, "offset": offset}
    )
    caller_id = str(caller.user_id)
    servers: list[ListedServer] = []
    for row in rows:
        server_id = row[0]
        if server_id is None:  # the page is past the end: only the total came
            break
        if not servers or servers[-1].columns.id != server_id:
            columns = ServerColumns._make(row[:_LISTED])
            if caller.acts_as_admin or columns.owner_id == caller_id:
                permissions = ["*"]
            else:
                permissions = sorted(row[_PERMISSIONS] or ())
            servers.append(ListedServer(columns, [], permissions))
        if row[_IP] is not None:
            servers[-1].allocations.append((row[_IP], row[_PORT]))
    return ServerPage(servers, rows[0][_TOTAL] if rows else 0)


# Shown in place of a value the caller may not see (the startup command of owners, sub-users).
HIDDEN_VALUE: Final = "********"


def _detail(field: str, message: str) -> ErrorDetail:
    return ErrorDetail(loc=["variables", field], msg=message, type="value_error")


def validate_variables(
    blueprint: Blueprint, given: dict[str, str], *, current: dict[str, str], user: bool
) -> dict[str, str]:
    """Merge ``given`` into ``current`` (or the defaults) under the blueprint's rules.

    With ``user``, only user-editable variables may be set, and a problem with a variable
    users may not see is reported without its name or rule (they cannot fix it, and its
    rule says something of its value). Every other problem is reported with its name.
    """
    spec = {v["env"]: v for v in blueprint.variables}
    problems: list[ErrorDetail] = []
    values = {env: current.get(env, str(v.get("default", ""))) for env, v in spec.items()}
    for env, value in given.items():
        variable = spec.get(env)
        if variable is None or (user and not variable.get("user_editable")):
            problems.append(_detail(env, "no such variable, or not editable"))
            continue
        values[env] = value
    hidden_problem = False
    for env, variable in spec.items():
        problem = value_problem(variable, values[env])
        if problem is None:
            continue
        if user and not variable.get("user_viewable"):
            hidden_problem = True
        else:
            problems.append(_detail(env, problem))
    if hidden_problem:
        problems.append(
            ErrorDetail(
                loc=["variables"],
                msg="a variable only administrators see is not valid: ask an administrator",
                type="value_error",
            )
        )
    if problems:
        raise InvalidRequest("invalid variables", details=problems)
    return values


def render_startup(template: str, values: dict[str, str]) -> list[str]:
    """Split the template into arguments first, then fill placeholders inside each one.

    A value can therefore never add arguments (no argument injection), and no shell ever
    reads the result. 400 if the template cannot be split or has too many arguments (a
    blueprint saved before these were checked).
    """
    try:
        words = startup_words(template)
    except ValueError as err:
        raise InvalidRequest(f"the blueprint's startup command {err}") from err
    return fill_placeholders(words, values)


def _check_lengths(arguments: list[str]) -> None:
    """400 naming each argument that the values made longer than a node takes."""
    problems = [
        ErrorDetail(
            loc=["startup", index],
            msg=f"longer than {MAX_ARG_LENGTH} characters once its placeholders are filled in",
            type="value_error",
        )
        for index in too_long(arguments)
    ]
    if problems:
        raise InvalidRequest("the startup command would be too long", details=problems)


def _placeholder_values(
    server: Server, variables: dict[str, str], allocations: list[Allocation]
) -> dict[str, str]:
    """What each placeholder of the startup command stands for: the variables, then the
    built-ins."""
    primary = allocations[0] if allocations else None
    return {
        **variables,
        "SERVER_MEMORY": str(server.memory_mib),
        "SERVER_IP": primary.ip if primary else "",
        "SERVER_PORT": str(primary.port) if primary else "",
    }


async def shown_startup(
    db: AsyncSession, server: Server, blueprint: Blueprint, *, reveal_hidden: bool
) -> list[str]:
    """The server's startup command as a caller sees it: unless ``reveal_hidden``, the value
    of every variable users may not see is :data:`HIDDEN_VALUE` (as in the variables list,
    which leaves such variables out)."""
    variables = dict(server.variables)
    if not reveal_hidden:
        for variable in blueprint.variables:
            if not variable.get("user_viewable"):
                variables[variable["env"]] = HIDDEN_VALUE
    allocations = await allocations_of(db, server.id)
    return render_startup(blueprint.startup, _placeholder_values(server, variables, allocations))


@dataclass(frozen=True)
class ServerLimits:
    memory_mib: int
    swap_mib: int
    cpu_percent: int
    disk_mib: int
    pids_limit: int


async def _lock_node(db: AsyncSession, node_id: uuid.UUID) -> Node:
    # Row lock on PostgreSQL (SQLite transactions are serial already): concurrent creates on
    # one node queue here, so capacity and ports are decided one at a time.
    node = await db.scalar(select(Node).where(Node.id == node_id).with_for_update())
    if node is None:
        raise NotFound("no such node")
    return node


async def _check_capacity(db: AsyncSession, node: Node, limits: ServerLimits) -> None:
    used_memory, used_disk = (
        await db.execute(
            select(
                func.coalesce(func.sum(Server.memory_mib), 0),
                func.coalesce(func.sum(Server.disk_mib), 0),
            ).where(Server.node_id == node.id)
        )
    ).one()
    if node.memory_mib and used_memory + limits.memory_mib > node.memory_mib:
        raise Conflict(f"node {node.name!r} has not enough memory left")
    if node.disk_mib and used_disk + limits.disk_mib > node.disk_mib:
        raise Conflict(f"node {node.name!r} has not enough disk left")


async def pick_node(db: AsyncSession, location_id: uuid.UUID, limits: ServerLimits) -> uuid.UUID:
    """An online node in the location with room for ``limits`` and a free port."""
    nodes = list(await db.scalars(select(Node).where(Node.location_id == location_id)))
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
) -> Server:
    """Insert the server and give it one free port of the node, atomically."""
    node = await _lock_node(db, node_id)
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
    free = await db.scalar(
        select(Allocation.id)
        .where(Allocation.node_id == node.id, Allocation.server_id.is_(None))
        .order_by(Allocation.port)
        .limit(1)
    )
    taken = None
    if free is not None:
        taken = await db.execute(
            update(Allocation)
            .where(Allocation.id == free, Allocation.server_id.is_(None))
            .values(server_id=server.id)
        )
    if taken is None or taken.rowcount != 1:  # type: ignore[attr-defined]
        raise Conflict(f"node {node.name!r} has no free port")
    return server


async def allocations_of(db: AsyncSession, server_id: uuid.UUID) -> list[Allocation]:
    return list(
        await db.scalars(
            select(Allocation).where(Allocation.server_id == server_id).order_by(Allocation.port)
        )
    )


async def build_spec(
    db: AsyncSession,
    server: Server,
    *,
    image: str | None = None,
    variables: dict[str, str] | None = None,
) -> ServerSpec:
    """The node's view of the server: what the agent's create (and spec update) carries.

    ``image`` and ``variables`` stand in for the server's own, for a change that is not
    stored yet (it is sent to the node first).
    """
    blueprint = await db.get(Blueprint, server.blueprint_id)
    if blueprint is None:
        raise NotFound("the server's blueprint no longer exists")
    allocations = await allocations_of(db, server.id)
    if variables is None:
        variables = dict(server.variables)
    values = _placeholder_values(server, variables, allocations)
    startup = render_startup(blueprint.startup, values)
    _check_lengths(startup)
    try:
        return _spec(server, blueprint, image, startup, variables, allocations)
    except ValidationError as err:
        # What no earlier check covers (a blueprint saved by an older version, server
        # limits configured past a node's): a 400 naming the fields, never their values.
        raise InvalidRequest.from_validation(
            err, "the server's specification is not valid"
        ) from err


def _spec(
    server: Server,
    blueprint: Blueprint,
    image: str | None,
    startup: list[str],
    variables: dict[str, str],
    allocations: list[Allocation],
) -> ServerSpec:
    install = (
        InstallSpec.model_validate(blueprint.install) if blueprint.install is not None else None
    )
    return ServerSpec.model_validate(
        {
            "uuid": server.id,
            "image": server.image if image is None else image,
            "startup": startup,
            "environment": dict(variables),
            "memory_mib": server.memory_mib,
            "swap_mib": server.swap_mib,
            "cpu_percent": server.cpu_percent,
            "disk_mib": server.disk_mib,
            "pids_limit": server.pids_limit,
            "allocations": [
                {"ip": a.ip, "port": a.port, "protocols": ["tcp", "udp"]} for a in allocations
            ],
            "stop": blueprint.stop,
            "read_only_root": blueprint.read_only_root,
            "install": install,
            "file_denylist": blueprint.file_denylist,
        }
    )
