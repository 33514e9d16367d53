"""A server's startup settings, its ports and its activity, for owners and sub-users."""

from __future__ import annotations

import uuid
from typing import Any, Final

import structlog
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.api.audit import filtered
from control_plane.api.routing import ApiRequest, ApiRoutes
from control_plane.db.models import Allocation, AuditEntry, Server
from control_plane.errors import ApiError, Conflict, InvalidRequest, NotFound
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
from shared.server_spec import MAX_ALLOCATIONS, ServerSpec

routes = ApiRoutes("server settings")
log = structlog.get_logger("cp.ports")


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
    # How many ports the server's users may hold in all (they take free ports of the node
    # and give them back with ``allocations.create``/``.delete``); 0: only an administrator
    # changes which ports the server has.
    port_limit: int


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
        data=allocations_out(await placement.allocations_of(req.db, req.server.id)),
        port_limit=req.server.port_limit,
    )


@routes.post(
    "/api/v1/servers/{server_id}/allocations",
    summary="Take one more of the node's free ports (on the main port's address), up to the"
    " server's port limit; the game has it from its next start",
    permission="allocations.create",
    response=AllocationOut,
    status=201,
    transactional=False,
    calls_node=True,
)
async def take_allocation(req: ApiRequest[Any, Any]) -> AllocationOut:
    return await take_free_port(req)


@routes.delete(
    "/api/v1/servers/{server_id}/allocations/{allocation_id}",
    summary="Give one of the server's ports back to the node (not the main one; the server"
    " stopped)",
    permission="allocations.delete",
    status=204,
    transactional=False,
    calls_node=True,
)
async def give_back_allocation(req: ApiRequest[Any, Any]) -> None:
    await give_back_port(req, req.uuid_param("allocation_id"))


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


# States in which the game may be listening on its ports.
RUNNING_STATES: Final = frozenset({"starting", "running", "stopping"})
NO_PORT_CHANGES: Final = (
    "this server's users may not take or give back ports: its port limit is 0 (an"
    " administrator sets it)"
)


async def take_free_port(req: ApiRequest[Any, Any]) -> AllocationOut:
    """One of the node's free ports given to the server (ours and Pterodactyl's routes):
    the lowest on the main port's address, while the server holds fewer than its port limit;
    claimed under the node's lock (as a new server takes its ports), then the node takes the
    spec with it. A node that refuses it or cannot be reached: the port is free again and
    the error is the answer."""
    server_id = req.server.id
    user = str(req.me.user_id)
    taken: uuid.UUID | None = None

    async def with_new_port(db: AsyncSession, server: Server) -> ServerSpec:
        nonlocal taken
        rows = await placement.allocations_of(db, server_id)
        if server.port_limit == 0:
            raise Conflict(NO_PORT_CHANGES)
        # A limit Pterodactyl's API set may be above what one spec holds.
        if len(rows) >= min(server.port_limit, MAX_ALLOCATIONS):
            raise Conflict(f"this server holds {len(rows)} ports, its limit: give one back first")
        free = select(Allocation).where(
            Allocation.node_id == server.node_id, Allocation.server_id.is_(None)
        )
        if rows:
            free = free.where(Allocation.ip == rows[0].ip)
            # The main port stays the main one whatever the new port's number.
            rows[0].is_primary = True
        candidates = await db.scalars(
            free.with_only_columns(Allocation.id).order_by(Allocation.port).limit(8)
        )
        for candidate in list(candidates):
            # Only while still free: an administrator may delete a free port without the
            # node's lock (``infrastructure.delete_allocation`` deletes only a free one).
            claimed = await db.execute(
                update(Allocation)
                .where(Allocation.id == candidate, Allocation.server_id.is_(None))
                .values(server_id=server_id, notes=None, is_primary=False)
                .execution_options(synchronize_session=False)
            )
            if getattr(claimed, "rowcount", 0):
                taken = candidate
                return await startup.build_spec(db, server)
        where = f" on {rows[0].ip}" if rows else ""
        raise Conflict(f"the node has no free port{where}: ask the host to add ports")

    numbered = await spec_changes.number(req.transaction, server_id, with_new_port)
    try:
        await spec_changes.deliver(
            req.transaction, req.nodes, numbered, spec_changes.as_stored, user=user
        )
    except ApiError:

        async def put_back(db: AsyncSession, server: Server) -> ServerSpec:
            port = await db.get(Allocation, taken)
            if port is not None and port.server_id == server_id and not port.is_primary:
                port.server_id, port.notes = None, None
                await db.flush()
            return await startup.build_spec(db, server)

        await _send_back(req, server_id, put_back, user)
        raise
    async with req.transaction() as db:
        rows = await placement.allocations_of(db, server_id)
        port = next((a for a in rows if a.id == taken), None)
        if port is None:
            raise NotFound("the port was given back while it was being taken")
        await req.audit(
            "server.allocation.created",
            target_type="server",
            target_id=str(server_id),
            details={"allocation": f"{port.ip}:{port.port}"},
        )
        return next(a for a in allocations_out(rows) if a.id == taken)


async def give_back_port(req: ApiRequest[Any, Any], allocation_id: uuid.UUID) -> None:
    """One of the server's ports free again (ours and Pterodactyl's routes), its notes gone;
    never the main port, and only while the game is stopped (a running game keeps listening
    on it). The node takes the spec without it; if it refuses or cannot be reached, the
    port is the server's again (unless someone took it meanwhile)."""
    server_id = req.server.id
    user = str(req.me.user_id)
    given: tuple[str, int, str | None] | None = None

    async def without_port(db: AsyncSession, server: Server) -> ServerSpec:
        nonlocal given
        if server.port_limit == 0:
            raise Conflict(NO_PORT_CHANGES)
        rows = await placement.allocations_of(db, server_id)
        port = next((a for a in rows if a.id == allocation_id), None)
        if port is None:
            raise NotFound("no such port on this server")
        if port is rows[0]:
            raise Conflict("the main port cannot be given back: make another port the main one")
        if server.state in RUNNING_STATES:
            # Free in here, it would still be the game's until it stops: another server
            # given it could not start.
            raise Conflict(
                f"the server is {server.state}: stop it first, its game listens on"
                f" {port.ip}:{port.port} until it stops"
            )
        given = (port.ip, port.port, port.notes)
        port.server_id, port.notes, port.is_primary = None, None, False
        await db.flush()
        return await startup.build_spec(db, server)

    numbered = await spec_changes.number(req.transaction, server_id, without_port)
    assert given is not None
    ip, number, notes = given
    try:
        await spec_changes.deliver(
            req.transaction, req.nodes, numbered, spec_changes.as_stored, user=user
        )
    except ApiError:

        async def put_back(db: AsyncSession, server: Server) -> ServerSpec:
            port = await db.get(Allocation, allocation_id)
            if port is not None and port.server_id is None:
                port.server_id, port.notes = server_id, notes
                await db.flush()
            return await startup.build_spec(db, server)

        await _send_back(req, server_id, put_back, user)
        raise
    async with req.transaction():
        await req.audit(
            "server.allocation.deleted",
            target_type="server",
            target_id=str(server_id),
            details={"allocation": f"{ip}:{number}"},
        )


async def _send_back(
    req: ApiRequest[Any, Any], server_id: uuid.UUID, put_back: spec_changes.Build, user: str
) -> None:
    """After the node refused a change of ports: ``put_back`` the ports as they were (under
    the node's and the server's locks) and send that spec; a node still unreachable gets it
    with the spec of its next start."""
    try:
        numbered = await spec_changes.number(req.transaction, server_id, put_back)
        await spec_changes.deliver(
            req.transaction, req.nodes, numbered, spec_changes.as_stored, user=user
        )
    except ApiError:
        log.warning("the node has not taken the ports put back yet", server=str(server_id))
