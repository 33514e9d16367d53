"""``/api/application/servers``: what billing modules do to servers.

Every action runs our own route handler (``control_plane/api/servers.py``,
``server_settings.py``) on this request, with the input translated into our model: the
same checks, node calls, audit records and rate limits. Only the answers are Pterodactyl's.
"""

from __future__ import annotations

import uuid
from typing import Any

import structlog
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.api import server_actions
from control_plane.api import servers as native
from control_plane.api.compat.application_users import check_external_id
from control_plane.api.compat.envelope import CompatObject, CompatQuery, collection, item, page
from control_plane.api.compat.errors import DisplayError
from control_plane.api.compat.ids import APPLICATION_IDS, EXTERNAL_SERVER, uuid_of
from control_plane.api.compat.transform import (
    SERVER_DEFAULTS,
    allocation_attributes,
    egg_attributes,
    nest_attributes,
    node_attributes,
    server_attributes,
    server_links,
    user_attributes,
)
from control_plane.api.routing import NOWHERE, Access, ApiRequest, ApiRoutes
from control_plane.db.models import Allocation, Blueprint, Location, Node, Server, User
from control_plane.errors import ApiError, Conflict, InvalidRequest
from control_plane.schemas.compat import (
    CompatServerCreate,
    ServerQuery,
)
from control_plane.schemas.servers import PowerIn, ServerCreate
from control_plane.security.permissions import VIEW
from control_plane.services import records
from control_plane.services.servers.placement import allocations_of
from shared.errors import ErrorDetail
from shared.server_spec import MAX_ALLOCATIONS

log = structlog.get_logger("compat")

routes = ApiRoutes(
    "pterodactyl application",
    access=Access.ADMIN,
    path_ids={**APPLICATION_IDS, **EXTERNAL_SERVER},
)
ROOT = "/api/application/servers"
INCLUDES = ("allocations", "user", "node", "egg", "nest", "variables")
# Our field → Pterodactyl's, for the fields of a validation error.
FIELD_NAMES = {
    "memory_mib": "limits.memory",
    "swap_mib": "limits.swap",
    "cpu_percent": "limits.cpu",
    "disk_mib": "limits.disk",
    "image": "docker_image",
    "variables": "environment",
    "owner_id": "user",
    "blueprint_id": "egg",
}


def renamed(err: InvalidRequest) -> InvalidRequest:
    """``err`` with its fields named as Pterodactyl names them."""
    details = [
        ErrorDetail(
            loc=[FIELD_NAMES.get(str(d.loc[0]), str(d.loc[0])), *d.loc[1:]] if d.loc else [],
            msg=d.msg,
            type=d.type,
        )
        for d in err.details
    ]
    return InvalidRequest(err.message, details=details)


async def server_object(db: AsyncSession, server: Server, wanted: frozenset[str]) -> dict[str, Any]:
    """A server as the Application API shows it, with the relationships ``wanted``."""
    allocations = await allocations_of(db, server.id)
    blueprint = await records.get_or_404(db, Blueprint, server.blueprint_id, "egg")
    attributes = server_attributes(server, blueprint, await server_links(db, server, allocations))
    relationships: dict[str, Any] = {}
    if "allocations" in wanted:
        relationships["allocations"] = collection(
            "allocation", [allocation_attributes(a) for a in allocations]
        )
    if "user" in wanted:
        owner = await records.get_or_404(db, User, server.owner_id, "user")
        relationships["user"] = item("user", await user_attributes(db, owner))
    if "node" in wanted:
        node = await records.get_or_404(db, Node, server.node_id, "node")
        location = await db.get(Location, node.location_id) if node.location_id else None
        relationships["node"] = item(
            "node", node_attributes(node, location.compat_id if location else None, None)
        )
    if "egg" in wanted:
        relationships["egg"] = item("egg", egg_attributes(blueprint))
    if "nest" in wanted:
        relationships["nest"] = item("nest", nest_attributes())
    if "variables" in wanted:
        environment = attributes["container"]["environment"]
        relationships["variables"] = collection(
            "server_variable",
            [
                {
                    "id": index + 1,
                    "egg_id": blueprint.compat_id,
                    "name": v.get("name", v["env"]),
                    "description": v.get("description", ""),
                    "env_variable": v["env"],
                    "default_value": str(v.get("default", "")),
                    "user_viewable": bool(v.get("user_viewable")),
                    "user_editable": bool(v.get("user_editable")),
                    "server_value": environment.get(v["env"]),
                }
                for index, v in enumerate(blueprint.variables)
            ],
        )
    return item("server", attributes, **relationships)


@routes.get(ROOT, summary="Pterodactyl: list servers", query=ServerQuery, response=CompatObject)
async def list_servers(req: ApiRequest[Any, ServerQuery]) -> dict[str, Any]:
    q = req.query
    statement = select(Server)
    for column, value in (
        (Server.name, q.name),
        (Server.identifier, q.identifier),
        (Server.external_id, q.external_id),
        (Server.image, q.image),
    ):
        if value is not None:
            statement = statement.where(column.contains(value, autoescape=True))
    if q.uuid is not None:
        try:
            statement = statement.where(Server.id == uuid.UUID(q.uuid))
        except ValueError:
            statement = statement.where(Server.id.is_(None))
    total = await req.db.scalar(select(func.count()).select_from(statement.subquery())) or 0
    rows = await req.db.scalars(
        statement.order_by(Server.compat_id).offset(q.offset).limit(q.per_page)
    )
    wanted = q.includes(*INCLUDES)
    return page(req, [await server_object(req.db, s, wanted) for s in rows], total)


@routes.get(
    ROOT + "/{server_id}",
    summary="Pterodactyl: get a server",
    permission=VIEW,
    query=CompatQuery,
    response=CompatObject,
)
async def get_server(req: ApiRequest[Any, CompatQuery]) -> dict[str, Any]:
    return await server_object(req.db, req.server, req.query.includes(*INCLUDES))


@routes.get(
    ROOT + "/external/{external_id}",
    summary="Pterodactyl: get a server by the billing system's id",
    query=CompatQuery,
    response=CompatObject,
)
async def get_external_server(req: ApiRequest[Any, CompatQuery]) -> dict[str, Any]:
    server = await records.get_or_404(req.db, Server, req.uuid_param("external_id"), "server")
    return await server_object(req.db, server, req.query.includes(*INCLUDES))


async def _where(req: ApiRequest[CompatServerCreate, Any], db: AsyncSession) -> native.Where:
    """Pterodactyl's ``allocation`` (given ports) or ``deploy`` (any node in locations)."""
    body = req.body
    # As Pterodactyl: ``deploy`` wins over ``allocation`` when both are sent.
    if body.deploy is not None:
        if not body.deploy.locations:
            return native.Where()
        locations = list(
            await db.scalars(
                select(Location.id).where(Location.compat_id.in_(body.deploy.locations))
            )
        )
        return native.Where(location_ids=locations)
    if body.allocation is not None:
        numbers = [body.allocation.default, *body.allocation.additional]
        rows = list(await db.scalars(select(Allocation).where(Allocation.compat_id.in_(numbers))))
        if len(rows) != len(set(numbers)):
            detail = ErrorDetail(
                loc=["allocation", "default"], msg="no such allocation", type="exists"
            )
            raise InvalidRequest("invalid request body", details=[detail])
        if len({a.node_id for a in rows}) != 1:
            raise DisplayError("the allocations given are not all on one node")
        # The default first: the server's main port.
        by_number = {a.compat_id: a.id for a in rows}
        ordered = [by_number[n] for n in dict.fromkeys(numbers)]
        return native.Where(node_id=rows[0].node_id, allocation_ids=ordered)
    detail = ErrorDetail(loc=["allocation"], msg="give allocation or deploy", type="missing")
    raise InvalidRequest("invalid request body", details=[detail])


def _kept(body: CompatServerCreate) -> dict[str, Any]:
    """What the request says that we only keep and echo (docs/pterodactyl-compat.md)."""
    return {
        "io": body.limits.io if body.limits.io is not None else SERVER_DEFAULTS["io"],
        "threads": body.limits.threads,
        "oom_disabled": body.limits.oom_disabled
        if body.limits.oom_disabled is not None
        else body.oom_disabled
        if body.oom_disabled is not None
        else True,
        "databases": body.feature_limits.databases or 0,
        "backups": body.feature_limits.backups or 0,
        "startup": body.startup,
        "skip_scripts": body.skip_scripts,
        "start_on_completion": body.start_on_completion,
        "deploy": body.deploy.model_dump() if body.deploy is not None else None,
    }


@routes.post(
    ROOT,
    summary="Pterodactyl: create a server (allocation or deploy)",
    body=CompatServerCreate,
    query=CompatQuery,
    response=CompatObject,
    status=201,
    transactional=False,
    calls_node=True,
)
async def create_server(req: ApiRequest[CompatServerCreate, CompatQuery]) -> dict[str, Any]:
    body = req.body
    async with req.transaction(write=False) as db:
        await check_external_id(db, Server, body.external_id)
        owner = await uuid_of(db, User, body.user)
        blueprint_id = await uuid_of(db, Blueprint, body.egg)
        blueprint = await db.get(Blueprint, blueprint_id) if blueprint_id else None
        where = await _where(req, db)
    missing = [name for name, value in (("user", owner), ("egg", blueprint)) if value is None]
    if missing:
        details = [ErrorDetail(loc=[m], msg=f"no such {m}", type="exists") for m in missing]
        raise InvalidRequest("invalid request body", details=details)
    assert blueprint is not None
    assert owner is not None
    try:
        ours = ServerCreate(
            name=body.name,
            owner_id=owner,
            blueprint_id=blueprint.id,
            # Where it goes is ``where``; the model wants one of the two named.
            node_id=where.node_id or NOWHERE,
            image=body.docker_image,
            memory_mib=body.limits.memory,
            swap_mib=body.limits.swap,
            cpu_percent=body.limits.cpu,
            disk_mib=body.limits.disk,
            variables=environment_of(blueprint, body.environment),
        )
    except ValidationError as err:
        raise renamed(InvalidRequest.from_validation(err, "invalid request body")) from err

    def prepare(server: Server) -> None:
        server.external_id = body.external_id
        server.description = body.description or ""
        server.compat_fields = _kept(body)
        # The server's port limit; above what one spec holds, that many (docs).
        server.port_limit = min(body.feature_limits.allocations or 0, MAX_ALLOCATIONS)

    try:
        created = await native.create(req, ours, where, prepare)
    except InvalidRequest as err:
        raise renamed(err) from err
    except Conflict as err:
        # No node or port can take it: Pterodactyl's 400 (billing modules read "no room").
        raise DisplayError(err.message) from err
    if body.start_on_completion and blueprint.install is None:
        # Nothing to install: it can start now (the same action as our power route). The
        # server exists whatever the start does: a billing system that read an error here
        # would create it again (a second server, a second port).
        node = await _node_of(req, created)
        try:
            await server_actions.power(req.http.app, req.me, created, node, PowerIn(action="start"))
        except ApiError as err:
            log.warning(
                "server created, its first start failed", server=str(created.id), error=err.message
            )
    async with req.transaction(write=False) as db:
        server = await records.get_or_404(db, Server, created.id, "server")
        # The ports are what a billing module reads first: always included here.
        wanted = req.query.includes(*INCLUDES) | {"allocations"}
        return await server_object(db, server, wanted)


async def _node_of(req: ApiRequest[Any, Any], server: Server) -> Node:
    async with req.transaction(write=False) as db:
        return await records.get_or_404(db, Node, server.node_id, "node")


def environment_of(
    blueprint: Blueprint, environment: dict[str, str | int | float | bool | None]
) -> dict[str, str]:
    """Pterodactyl sends every variable of the egg (values of any JSON type) and ignores
    names the egg does not have; ours are text, checked by our variable rules."""
    known = {v["env"] for v in blueprint.variables}
    return {k: _text(v) for k, v in environment.items() if k in known and v is not None}


def _text(value: str | int | float | bool) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)
