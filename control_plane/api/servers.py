"""Game servers: administrators create, suspend and delete them; owners and sub-users use them."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import delete, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.api import backup_actions, server_actions
from control_plane.api.list_cache import json_bytes, server_page_json
from control_plane.api.routing import Access, ApiRequest, ApiRoutes, JsonBytes
from control_plane.api.sftp_sync import push_after_commit
from control_plane.db.models import Allocation, Node, Server, User
from control_plane.db.session import transaction
from control_plane.errors import ApiError, InvalidRequest, NotFound
from control_plane.keys import CONSOLES, LIST_CACHE, SESSIONS
from control_plane.schemas.common import Page, PageQuery
from control_plane.schemas.servers import (
    CommandIn,
    PowerIn,
    ServerCreate,
    ServerDetail,
    ServerOut,
    ServerRename,
)
from control_plane.security.permissions import VIEW, ServerAccess
from control_plane.services import audit, sftp_push
from control_plane.services import blueprints as blueprint_service
from control_plane.services import infrastructure as infra
from control_plane.services.audit import AuditEvent
from control_plane.services.servers import installs, listing, placement, startup
from control_plane.services.servers.state import change_state
from control_plane.settings import ControlPlaneSettings
from shared.errors import ErrorDetail, UpstreamNoAnswer
from shared.node_endpoints import LogLines
from shared.server_spec import ConsoleLines, PowerAction, ServerStats, ServerStatus

routes = ApiRoutes("servers")
log = structlog.get_logger("servers")


async def server_out(db: AsyncSession, server: Server, access: ServerAccess) -> ServerOut:
    return describe(server, access, await placement.allocations_of(db, server.id))


def describe(server: Server, access: ServerAccess, allocations: list[Allocation]) -> ServerOut:
    listed = listing.listed_server(server, allocations, sorted(access.permissions))
    return ServerOut.model_validate(server_fields(listed))


def server_fields(server: listing.ListedServer) -> dict[str, Any]:
    """A server in :class:`ServerOut`'s shape as plain data.

    The list sends this as it is (no model per server); single servers validate it.
    """
    columns = server.columns
    return {
        "id": columns.id,
        "name": columns.name,
        "owner_id": columns.owner_id,
        "node_id": columns.node_id,
        "blueprint_id": columns.blueprint_id,
        "image": columns.image,
        "state": columns.state,
        "suspended": columns.suspended,
        "limits": {
            "memory_mib": columns.memory_mib,
            "swap_mib": columns.swap_mib,
            "cpu_percent": columns.cpu_percent,
            "disk_mib": columns.disk_mib,
            "pids_limit": columns.pids_limit,
        },
        "allocations": [{"ip": ip, "port": port} for ip, port in server.allocations],
        "created_at": columns.created_at,
        "permissions": server.permissions,
    }


def check_limits(
    settings: ControlPlaneSettings, body: ServerCreate | placement.ServerLimits
) -> placement.ServerLimits:
    """The limits of ``body`` (a new server's, or new limits) within the configured ranges,
    or a 400 naming each field."""
    problems = []
    for field in ("memory_mib", "cpu_percent", "disk_mib"):
        low, high = settings.limit(field)
        value = getattr(body, field)
        if not low <= value <= high:
            problems.append(
                ErrorDetail(
                    loc=[field], msg=f"must be between {low} and {high}", type="value_error"
                )
            )
    if problems:
        raise InvalidRequest("limits out of range", details=problems)
    return placement.ServerLimits(
        body.memory_mib, body.swap_mib, body.cpu_percent, body.disk_mib, body.pids_limit
    )


@dataclass(frozen=True)
class Where:
    """Where a new server goes: a node (and, optionally, which of its allocations), or any
    node with room in some locations (None: in any location)."""

    node_id: uuid.UUID | None = None
    location_ids: list[uuid.UUID] | None = None
    allocation_ids: list[uuid.UUID] | None = None

    @classmethod
    def of(cls, body: ServerCreate) -> Where:
        if body.node_id is not None:
            chosen = None if body.allocation_id is None else [body.allocation_id]
            return cls(node_id=body.node_id, allocation_ids=chosen)
        assert body.location_id is not None  # the schema requires one of the two
        return cls(location_ids=[body.location_id])


async def create(
    req: ApiRequest[Any, Any],
    body: ServerCreate,
    where: Where,
    prepare: Callable[[Server], None] | None = None,
) -> Server:
    """Create the server ``body`` describes at ``where``: record it, have its node create
    it, record that; ``prepare`` fills in more of the record before it is first stored.
    The one way servers are made (our route and the Pterodactyl-compatible one)."""
    limits = check_limits(req.settings, body)
    factory = req.http.app[SESSIONS]
    # 1. Take the ports and record the server (committed, so concurrent creates see it).
    async with transaction(factory) as db:
        owner = await db.get(User, body.owner_id)
        if owner is None:
            raise InvalidRequest("no such owner")
        blueprint = await blueprint_service.get_blueprint(db, body.blueprint_id)
        node_id = where.node_id or await placement.pick_node(db, where.location_ids, limits)
        server = await placement.create_server(
            db,
            name=body.name,
            owner=owner,
            blueprint=blueprint,
            node_id=node_id,
            image=body.image,
            limits=limits,
            variables=body.variables,
            allocation_ids=where.allocation_ids,
        )
        if prepare is not None:
            prepare(server)
        spec = await startup.build_spec(db, server)
        node = await infra.get_node(db, node_id)
        has_installer = blueprint.install is not None
    # 2. Tell the node, outside any transaction; if it refuses, undo the record.
    try:
        await req.nodes.create_server(node, spec, user=str(req.me.user_id))
    except ApiError as err:
        if isinstance(err, UpstreamNoAnswer):
            # The node may have it (or be making it: an image pull outlasts our timeout):
            # undone there, or the record's going would leave it out of every route's reach.
            await _undo_on_node(req, node, spec.uuid)
        async with transaction(factory) as db:
            stale = await db.get(Server, spec.uuid)
            if stale is not None:
                await db.delete(stale)
        raise
    # 3. The node has it.
    async with transaction(factory) as db:
        created = await db.get(Server, spec.uuid)
        if created is not None:
            # Unless the node's events got here first (a fast installer may have finished).
            if created.state == "provisioning":
                await change_state(db, created, "installing" if has_installer else "offline")
            await audit.append(
                db,
                req.actor,
                AuditEvent(
                    "server.created",
                    target_type="server",
                    target_id=str(created.id),
                    details={
                        "name": created.name,
                        "owner": str(created.owner_id),
                        "node": node.name,
                    },
                ),
            )
            push_after_commit(req, [node.id])  # its owner may use SFTP there now
            return created
    # Deleted meanwhile: that deletion reached the node before this create did (or while
    # the node was still making it) and found nothing there to delete, so the node's copy
    # is undone here; left, no route could ever reach its volume and container again.
    await _undo_on_node(req, node, spec.uuid)
    raise NotFound("the server was deleted while it was being created")


async def _undo_on_node(req: ApiRequest[Any, Any], node: Node, server_id: uuid.UUID) -> None:
    try:
        await req.nodes.delete_server(node, server_id, user=str(req.me.user_id))
    except NotFound:
        pass
    except ApiError as err:
        log.warning(
            "a server deleted while it was created stays on its node: delete it there",
            server=str(server_id),
            node=node.name,
            error=err.message,
        )


@routes.post(
    "/api/v1/servers",
    summary="Create a server for a user on a node (or on any node with room in a location)",
    access=Access.ADMIN,
    body=ServerCreate,
    response=ServerOut,
    status=201,
    transactional=False,
    calls_node=True,
)
async def create_server(req: ApiRequest[ServerCreate, Any]) -> ServerOut:
    created = await create(req, req.body, Where.of(req.body))
    async with req.transaction(write=False) as db:
        return await server_out(db, created, ServerAccess(created.id, "admin", frozenset({"*"})))


@routes.get(
    "/api/v1/servers",
    summary="List the servers I may see",
    query=PageQuery,
    response=Page[ServerOut],
    transactional=False,
    kept_lists=True,
)
async def list_servers(req: ApiRequest[Any, PageQuery]) -> JsonBytes:
    query = req.query
    # Page[ServerOut] as plain data: one statement read it all, no model per server; kept
    # while the lists' version the caller's authentication read sees is the page's.
    page = await server_page_json(
        req.http.app[LIST_CACHE],
        req.reader,
        req.me,
        name="servers",
        offset=query.offset,
        limit=query.per_page,
        render=_entries,
    )
    meta = json_bytes({"page": query.page, "per_page": query.per_page, "total": page.total})
    # One copy of the kept entries (each "+" would copy them again).
    return JsonBytes(b"".join((b'{"data":', page.entries, b',"meta":', meta, b"}")))


def _entries(page: listing.ServerPage) -> list[dict[str, Any]]:
    return [server_fields(server) for server in page.servers]


@routes.get(
    "/api/v1/servers/{server_id}",
    summary="Get a server, with its last install (its output only with console.read)",
    permission=VIEW,
    response=ServerDetail,
)
async def get_server(req: ApiRequest[Any, Any]) -> ServerDetail:
    server = req.server
    listed = await server_out(req.db, server, req.access)
    install = installs.install_view(server, req.access)
    return ServerDetail.model_validate({**listed.model_dump(), "install": install})


@routes.patch(
    "/api/v1/servers/{server_id}",
    summary="Rename a server",
    permission="settings.rename",
    body=ServerRename,
    response=ServerOut,
)
async def rename_server(req: ApiRequest[ServerRename, Any]) -> ServerOut:
    old = req.server.name
    req.server.name = req.body.name
    await req.audit(
        "server.renamed",
        target_type="server",
        target_id=str(req.server.id),
        details={"from": old, "to": req.body.name},
    )
    return await server_out(req.db, req.server, req.access)


@routes.post(
    "/api/v1/servers/{server_id}/power",
    summary="Start, stop, restart or kill (each needs its control.* permission)",
    permission=VIEW,
    body=PowerIn,
    response=ServerStatus,
    status=202,
    rate_limit=server_actions.POWER_PRESET,
    transactional=False,
    calls_node=True,
)
async def power(req: ApiRequest[PowerIn, Any]) -> ServerStatus:
    """202 with the node's view of the server; stop and restart finish in the background."""
    req.require(server_actions.power_permission(req.body))
    node = await req.server_node()
    return await server_actions.power(req.http.app, req.me, req.server, node, req.body)


@routes.post(
    "/api/v1/servers/{server_id}/command",
    summary="Send a line to the game's console",
    permission=server_actions.COMMAND_PERMISSION,
    body=CommandIn,
    status=204,
    transactional=False,
    calls_node=True,
)
async def send_command(req: ApiRequest[CommandIn, Any]) -> None:
    node = await req.server_node()
    await server_actions.command(req.http.app, req.me, req.server, node, req.body)


@routes.get(
    "/api/v1/servers/{server_id}/logs",
    summary="Recent console lines",
    permission="console.read",
    query=LogLines,
    response=ConsoleLines,
    transactional=False,
    calls_node=True,
)
async def recent_logs(req: ApiRequest[Any, LogLines]) -> ConsoleLines:
    node = await req.server_node()
    return await req.nodes.logs(node, req.server.id, req.query, user=str(req.me.user_id))


@routes.get(
    "/api/v1/servers/{server_id}/stats",
    summary="CPU, memory, network, uptime",
    permission="stats.read",
    response=ServerStats,
    transactional=False,
    calls_node=True,
)
async def stats(req: ApiRequest[Any, Any]) -> ServerStats:
    node = await req.server_node()
    return await req.nodes.stats(node, req.server.id, user=str(req.me.user_id))


@routes.post(
    "/api/v1/servers/{server_id}/reinstall",
    summary="Run the blueprint's install step again (the server must be stopped)",
    permission="settings.reinstall",
    response=ServerStatus,
    status=202,
    transactional=False,
    calls_node=True,
)
async def reinstall(req: ApiRequest[Any, Any]) -> ServerStatus:
    """202 with the node's view: ``installing`` until the install event (or at once
    ``offline`` when the blueprint has no install step, which only rebuilds the container)."""
    server_id = req.server.id
    node = await req.server_node()
    status = await req.nodes.reinstall(node, server_id, user=str(req.me.user_id))
    async with req.transaction() as db:
        server = await db.get(Server, server_id)
        if server is None:
            raise NotFound("the server was deleted during the reinstall")
        await change_state(db, server, status.state)
        await req.audit("server.reinstalled", target_type="server", target_id=str(server_id))
    return status


@routes.post(
    "/api/v1/servers/{server_id}/suspend",
    summary="Suspend: stop the server and block every action until unsuspended",
    access=Access.ADMIN,
    permission=VIEW,
    response=ServerOut,
    transactional=False,
    calls_node=True,
)
async def suspend(req: ApiRequest[Any, Any]) -> ServerOut:
    server_id = req.server.id
    # The suspension stands first, so no action slips in while the node stops the game.
    async with req.transaction() as db:
        server = await db.get(Server, server_id)
        if server is None:
            raise NotFound("no such server")
        server.suspended = True
        node = await infra.get_node(db, server.node_id)
        await req.audit("server.suspended", target_type="server", target_id=str(server_id))
    await req.http.app[CONSOLES].close_server(server_id)
    try:
        # Stopped as its blueprint says (the node kills it after the grace time), never
        # killed at once: the game saves its world first, as at any stop.
        await req.nodes.power(node, server_id, PowerAction(action="stop"), user=str(req.me.user_id))
    except ApiError as err:
        # Suspension stands even if the node is down; it is stopped when it answers again.
        log.warning(
            "suspend: node did not stop the server", server=str(server_id), error=err.message
        )
    # Its SFTP sessions end too: the node's table no longer lists the server.
    await sftp_push.push_access(req.http.app[SESSIONS], req.nodes, [node.id])
    async with req.transaction(write=False) as db:
        server = await db.get(Server, server_id)
        if server is None:
            raise NotFound("the server was deleted while it was being suspended")
        return await server_out(db, server, req.access)


@routes.post(
    "/api/v1/servers/{server_id}/unsuspend",
    summary="Lift a suspension",
    access=Access.ADMIN,
    permission=VIEW,
    response=ServerOut,
)
async def unsuspend(req: ApiRequest[Any, Any]) -> ServerOut:
    req.server.suspended = False
    await req.audit("server.unsuspended", target_type="server", target_id=str(req.server.id))
    push_after_commit(req, [req.server.node_id])
    return await server_out(req.db, req.server, req.access)


@routes.delete(
    "/api/v1/servers/{server_id}",
    summary="Delete a server: its container and files on the node, then its record",
    access=Access.ADMIN,
    permission=VIEW,
    status=204,
    transactional=False,
    calls_node=True,
)
async def delete_server(req: ApiRequest[Any, Any]) -> None:
    """The node first: if it cannot delete, the record stays (try again)."""
    server_id, name = req.server.id, req.server.name
    node = await req.server_node()
    await backup_actions.delete_all(req.http.app, req.me, req.server, node)
    try:
        await req.nodes.delete_server(node, server_id, user=str(req.me.user_id))
    except NotFound:
        log.info("delete: the node no longer has the server", server=str(server_id))
    async with req.transaction() as db:
        # Its ports go back to the node free, without its users' notes or choice.
        await db.execute(
            update(Allocation)
            .where(Allocation.server_id == server_id)
            .values(notes=None, is_primary=False)
        )
        deleted = await db.execute(delete(Server).where(Server.id == server_id))
        if not (isinstance(deleted, CursorResult) and deleted.rowcount == 1):
            # Another deletion at the same moment got there first: it answers and audits.
            raise NotFound("no such server")
        await req.audit(
            "server.deleted", target_type="server", target_id=str(server_id), details={"name": name}
        )
    push_after_commit(req, [node.id])
