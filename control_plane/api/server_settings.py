"""A server's startup settings, its ports and its activity, for owners and sub-users."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.api.audit import filtered
from control_plane.api.routing import ApiRequest, ApiRoutes
from control_plane.db.models import AuditEntry, Server
from control_plane.errors import InvalidRequest, NotFound
from control_plane.schemas.audit import AuditEntryOut, AuditQuery
from control_plane.schemas.common import Output, Page, PageMeta, PageQuery
from control_plane.schemas.servers import (
    ServerAllocationOut,
    StartupOut,
    StartupUpdate,
    VariableOut,
)
from control_plane.services import blueprints as blueprint_service
from control_plane.services import infrastructure as infra
from control_plane.services.servers import placement, startup
from control_plane.services.servers.variables import validate_variables

routes = ApiRoutes("server settings")


async def startup_of(req: ApiRequest[Any, Any], server: Server) -> StartupOut:
    """The startup command and variables as this caller may see them (API and page)."""
    blueprint = await blueprint_service.get_blueprint(req.db, server.blueprint_id)
    # Owners see what users may see; only administrators see hidden variables, in the
    # variables list and in the command alike.
    hidden_ok = req.access.role == "admin"
    return StartupOut(
        command=await startup.shown_startup(req.db, server, blueprint, reveal_hidden=hidden_ok),
        image=server.image,
        images=[i["image"] for i in blueprint.images],
        variables=[
            VariableOut(
                env=v["env"],
                name=v["name"],
                description=v.get("description", ""),
                value=server.variables.get(v["env"], ""),
                editable=bool(v.get("user_editable")) or req.access.role == "admin",
            )
            for v in blueprint.variables
            if v.get("user_viewable") or hidden_ok
        ],
    )


@routes.get(
    "/api/v1/servers/{server_id}/startup",
    summary="The startup command and the variables I may see",
    permission="startup.read",
    response=StartupOut,
)
async def get_startup(req: ApiRequest[Any, Any]) -> StartupOut:
    return await startup_of(req, req.server)


async def _server_now(db: AsyncSession, server_id: uuid.UUID) -> Server:
    server = await db.get(Server, server_id)
    if server is None:
        raise NotFound("no such server")
    return server


@routes.patch(
    "/api/v1/servers/{server_id}/startup",
    summary="Change user-editable variables (startup.update) or the image (startup.docker-image)",
    permission="startup.update",
    body=StartupUpdate,
    response=StartupOut,
    transactional=False,
    calls_node=True,
)
async def update_startup(req: ApiRequest[StartupUpdate, Any]) -> StartupOut:
    """Validate, send the whole new spec to the node, and store the change only once the
    node took it: a node that cannot be reached refuses the change (502/503), nothing kept.
    """
    server_id = req.server.id
    # 1. Check the change and build the spec it makes (nothing written yet).
    async with req.transaction(write=False) as db:
        server = await _server_now(db, server_id)
        blueprint = await blueprint_service.get_blueprint(db, server.blueprint_id)
        image = server.image
        if req.body.image is not None:
            req.require("startup.docker-image")
            if req.body.image not in [i["image"] for i in blueprint.images]:
                raise InvalidRequest("image must be one of the blueprint's images")
            image = req.body.image
        variables = validate_variables(
            blueprint,
            req.body.variables,
            current=server.variables,
            user=req.access.role != "admin",
        )
        spec = await startup.build_spec(db, server, image=image, variables=variables)
        node = await infra.get_node(db, server.node_id)
    # 2. The node stores it (and rebuilds the container now or at the next start).
    await req.nodes.update_spec(node, spec, user=str(req.me.user_id))
    # 3. The node has it: keep it here too.
    async with req.transaction() as db:
        server = await _server_now(db, server_id)
        server.image = image
        server.variables = variables
        await req.audit(
            "server.startup.updated",
            target_type="server",
            target_id=str(server.id),
            details={"variables": sorted(req.body.variables), "image": req.body.image},
        )
        return await startup_of(req, server)


class AllocationsOut(Output):
    data: list[ServerAllocationOut]


@routes.get(
    "/api/v1/servers/{server_id}/allocations",
    summary="The server's ports",
    permission="allocations.read",
    response=AllocationsOut,
)
async def server_allocations(req: ApiRequest[Any, Any]) -> AllocationsOut:
    rows = await placement.allocations_of(req.db, req.server.id)
    return AllocationsOut(data=[ServerAllocationOut.model_validate(a) for a in rows])


@routes.get(
    "/api/v1/servers/{server_id}/activity",
    summary="What was done to this server, newest first",
    permission="activity.read",
    query=PageQuery,
    response=Page[AuditEntryOut],
)
async def activity(req: ApiRequest[Any, PageQuery]) -> Page[AuditEntryOut]:
    return await server_activity(req.db, req.server.id, req.query)


async def server_activity(
    db: AsyncSession, server_id: uuid.UUID, paging: PageQuery
) -> Page[AuditEntryOut]:
    """One page of the audit entries about ``server_id``, newest first (the API and the
    server's activity page)."""
    query = AuditQuery(
        page=paging.page, per_page=paging.per_page, target_type="server", target_id=str(server_id)
    )
    statement = filtered(query)
    total = await db.scalar(select(func.count()).select_from(statement.subquery())) or 0
    rows = await db.scalars(
        statement.order_by(AuditEntry.id.desc()).offset(query.offset).limit(query.per_page)
    )
    return Page[AuditEntryOut](
        data=[AuditEntryOut.model_validate(r) for r in rows],
        meta=PageMeta(page=query.page, per_page=query.per_page, total=total),
    )
