"""Administrators change a server's limits: checked as at creation (configured ranges, the
node's room, under the node's lock) and stored, then given to its node (the spec, and the
disk limit online); put back if the node refuses."""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

import structlog
from pydantic import Field
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.api.routing import Access, ApiRequest, ApiRoutes
from control_plane.api.servers import check_limits, server_out
from control_plane.db.models import Server
from control_plane.errors import ApiError, Conflict
from control_plane.schemas.common import Input
from control_plane.schemas.servers import ServerOut
from control_plane.security.permissions import VIEW
from control_plane.services.servers import placement, spec_changes, startup
from shared.node_api import DiskResize
from shared.server_spec import MAX_ALLOCATIONS, ServerSpec

log = structlog.get_logger("cp.limits")

routes = ApiRoutes("servers")


class LimitsUpdate(Input):
    """The limits to change; the others stay."""

    memory_mib: int | None = None
    swap_mib: int | None = Field(None, ge=0, le=32768)
    cpu_percent: int | None = None
    disk_mib: int | None = None
    pids_limit: int | None = Field(None, ge=32, le=32768)
    # How many ports the server's users may hold in all (they take the node's free ports and
    # give them back); 0: only administrators change its ports.
    port_limit: int | None = Field(None, ge=0, le=MAX_ALLOCATIONS)


def _limits_of(server: Server) -> placement.ServerLimits:
    return placement.ServerLimits(
        server.memory_mib, server.swap_mib, server.cpu_percent, server.disk_mib, server.pids_limit
    )


@routes.patch(
    "/api/v1/servers/{server_id}/limits",
    summary="Change a server's memory, swap, CPU, disk and process limits",
    access=Access.ADMIN,
    permission=VIEW,
    body=LimitsUpdate,
    response=ServerOut,
    transactional=False,
    calls_node=True,
)
async def update_limits(req: ApiRequest[Any, Any]) -> ServerOut:
    """Checked and stored under the node's lock, as a creation takes its room, with the spec
    they make; then the node (a stopped game's container now, a running one's at its next
    start; the disk at once). If the node refuses, the old limits are put back (unless
    another change of the limits was stored since) and sent again."""
    change: LimitsUpdate = req.body
    server_id = req.server.id
    old = new = _limits_of(req.server)
    resources = change.model_dump(exclude_none=True, exclude={"port_limit"})
    if resources:
        old, new = await _send_limits(req, resources)
    async with req.transaction() as db:
        server = await spec_changes.locked_server(db, server_id)
        before = {**dataclasses.asdict(old), "port_limit": server.port_limit}
        if change.port_limit is not None:
            server.port_limit = change.port_limit
            await db.flush()
        after = {**dataclasses.asdict(new), "port_limit": server.port_limit}
        await req.audit(
            "server.limits.updated",
            target_type="server",
            target_id=str(server_id),
            details={"from": before, "to": after},
        )
        return await server_out(db, server, req.access)


async def _send_limits(
    req: ApiRequest[Any, Any], resources: dict[str, int]
) -> tuple[placement.ServerLimits, placement.ServerLimits]:
    """The limits in ``resources`` stored and given to the node; those they replaced and
    the new ones."""
    server_id = req.server.id
    user = str(req.me.user_id)
    old = new = _limits_of(req.server)

    async def with_new_limits(db: AsyncSession, server: Server) -> ServerSpec:
        nonlocal old, new
        old = _limits_of(server)
        new = dataclasses.replace(old, **resources)
        check_limits(req.settings, new)
        await placement.check_new_limits(db, server, new)
        _store(server, new)
        return await startup.build_spec(db, server)

    numbered = await spec_changes.number(req.transaction, server_id, with_new_limits)
    try:
        await spec_changes.deliver(
            req.transaction, req.nodes, numbered, spec_changes.as_stored, user=user
        )
        if new.disk_mib != old.disk_mib:
            await req.nodes.resize_disk(
                numbered.node, server_id, DiskResize(disk_mib=new.disk_mib), user=user
            )
    except ApiError:
        reverted = False

        async def put_back(db: AsyncSession, server: Server) -> ServerSpec:
            # Under the node's and the server's locks, as the change was made. Unless another
            # change of the limits was stored since (it is the one to keep), or the room the
            # old ones took went to another server meanwhile (the new ones stay, said below).
            nonlocal reverted
            if _limits_of(server) == new:
                with contextlib.suppress(Conflict):
                    await placement.check_new_limits(db, server, old)
                    _store(server, old)
                    reverted = True
            return await startup.build_spec(db, server)

        with contextlib.suppress(ApiError):
            # The node may have the new ones (it took them, or a start sent them meanwhile):
            # it gets the old ones now, or (unreachable) with the spec of its next start.
            numbered = await spec_changes.number(req.transaction, server_id, put_back)
            if reverted:
                await spec_changes.deliver(
                    req.transaction, req.nodes, numbered, spec_changes.as_stored, user=user
                )
        if not reverted:
            log.warning(
                "limits the node refused are kept: another change of them was stored, their"
                " room was taken, or the database could not be reached",
                server=str(server_id),
            )
        raise
    return old, new


def _store(server: Server, limits: placement.ServerLimits) -> None:
    for name, value in dataclasses.asdict(limits).items():
        setattr(server, name, value)
