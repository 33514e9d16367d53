"""A server's startup settings, its ports and its activity, for owners and sub-users."""

from __future__ import annotations

import uuid
from typing import Any, Final

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.api.audit import filtered
from control_plane.api.routing import ApiRequest, ApiRoutes
from control_plane.db.models import Allocation, AuditEntry, Server
from control_plane.errors import InvalidRequest, NotFound
from control_plane.schemas.audit import AuditEntryOut, AuditQuery
from control_plane.schemas.common import Output, Page, PageMeta, PageQuery
from control_plane.schemas.servers import (
    AllocationOut,
    AllocationUpdate,
    StartupOut,
    StartupUpdate,
    VariableOut,
)
from control_plane.services import blueprints as blueprint_service
from control_plane.services.servers import placement, spec_changes, startup
from control_plane.services.servers.variables import validate_variables
from shared.server_spec import ServerSpec

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
    Checked and built again if another change of the server's spec came meanwhile."""
    image = ""
    variables: dict[str, str] = {}

    async def with_change(db: AsyncSession, server: Server) -> ServerSpec:
        nonlocal image, variables
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
        return await startup.build_spec(db, server, image=image, variables=variables)

    async def store(db: AsyncSession, server: Server) -> StartupOut:
        server.image = image
        server.variables = variables
        await req.audit(
            "server.startup.updated",
            target_type="server",
            target_id=str(server.id),
            details={"variables": sorted(req.body.variables), "image": req.body.image},
        )
        return await startup_of(req, server)

    return await spec_changes.send_then_store(
        req.transaction, req.nodes, req.server.id, with_change, store, user=str(req.me.user_id)
    )


class AllocationsOut(Output):
    data: list[AllocationOut]


def allocations_out(rows: list[Allocation]) -> list[AllocationOut]:
    """The server's allocations (``allocations_of``'s order: the main port first)."""
    return [
        AllocationOut(id=a.id, ip=a.ip, port=a.port, notes=a.notes, primary=index == 0)
        for index, a in enumerate(rows)
    ]


@routes.get(
    "/api/v1/servers/{server_id}/allocations",
    summary="The server's ports, the main one first",
    permission="allocations.read",
    response=AllocationsOut,
)
async def server_allocations(req: ApiRequest[Any, Any]) -> AllocationsOut:
    return AllocationsOut(
        data=allocations_out(await placement.allocations_of(req.db, req.server.id))
    )


@routes.patch(
    "/api/v1/servers/{server_id}/allocations/{allocation_id}",
    summary="Note what one of the server's ports is for, or make it the main one",
    permission="allocations.update",
    body=AllocationUpdate,
    response=AllocationOut,
    transactional=False,
    calls_node=True,
)
async def update_allocation(req: ApiRequest[AllocationUpdate, Any]) -> AllocationOut:
    body = req.body
    return await change_allocation(
        req,
        req.uuid_param("allocation_id"),
        notes=body.notes if "notes" in body.model_fields_set else UNCHANGED,
        main=bool(body.primary),
    )


UNCHANGED: Final = object()


async def change_allocation(
    req: ApiRequest[Any, Any], allocation_id: uuid.UUID, *, notes: object, main: bool
) -> AllocationOut:
    """Change one of the server's ports (ours and Pterodactyl's routes): its ``notes``
    (:data:`UNCHANGED`: left as they are), and, with ``main``, make it the main port. A new
    main port changes the game's SERVER_PORT: the node takes the new spec first (used from
    the next start), and the change is stored only once it has; an unreachable node
    refuses it (503), nothing kept. Empty notes are none."""
    server_id = req.server.id
    if isinstance(notes, str):
        notes = notes if notes.strip() else None

    async def the_port(db: AsyncSession) -> list[Allocation]:
        rows = await placement.allocations_of(db, server_id)
        if allocation_id not in [a.id for a in rows]:
            raise NotFound("no such port on this server")
        return rows

    async def with_main_port(db: AsyncSession, server: Server) -> ServerSpec:
        await the_port(db)
        return await startup.build_spec(db, server, main_port=allocation_id)

    async def store(db: AsyncSession, server: Server) -> AllocationOut:
        changed = next(a for a in await the_port(db) if a.id == allocation_id)
        if notes is not UNCHANGED:
            changed.notes = notes if isinstance(notes, str) else None
        if main:
            await db.execute(
                update(Allocation)
                .where(Allocation.server_id == server_id)
                .values(is_primary=Allocation.id == allocation_id)
                .execution_options(synchronize_session="fetch")
            )
        await db.flush()
        await req.audit(
            "server.allocation.updated",
            target_type="server",
            target_id=str(server_id),
            details={
                "allocation": f"{changed.ip}:{changed.port}",
                "notes": notes is not UNCHANGED,
                "main": main,
            },
        )
        return next(
            a
            for a in allocations_out(await placement.allocations_of(db, server_id))
            if a.id == allocation_id
        )

    if main:
        async with req.transaction() as db:
            server = await spec_changes.locked_server(db, server_id)
            if (await the_port(db))[0].id == allocation_id:  # the spec stays as it is
                return await store(db, server)
        # A new SERVER_PORT: the node has it first.
        return await spec_changes.send_then_store(
            req.transaction, req.nodes, server_id, with_main_port, store, user=str(req.me.user_id)
        )
    async with req.transaction() as db:
        return await store(db, await spec_changes.locked_server(db, server_id))


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
