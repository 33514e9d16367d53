"""``/api/application/servers/{id}``: changes billing modules make to a server (details,
build, startup, suspension, reinstall, deletion), each through our own route handler."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from control_plane.api import server_limits, server_settings
from control_plane.api import servers as native
from control_plane.api.compat.application_servers import (
    ROOT,
    environment_of,
    renamed,
    server_object,
)
from control_plane.api.compat.application_users import check_external_id
from control_plane.api.compat.envelope import CompatObject
from control_plane.api.compat.errors import DisplayError
from control_plane.api.compat.ids import APPLICATION_IDS, uuid_of
from control_plane.api.routing import Access, ApiRequest, ApiRoutes
from control_plane.api.server_limits import LimitsUpdate
from control_plane.db.models import Blueprint, Server, User
from control_plane.errors import Conflict, InvalidRequest
from control_plane.schemas.compat import ServerBuild, ServerDetails, ServerStartup
from control_plane.schemas.servers import ServerRename, StartupUpdate
from control_plane.security.permissions import VIEW
from control_plane.services import records
from control_plane.services.servers.placement import allocations_of
from shared.errors import ErrorDetail
from shared.server_spec import MAX_ALLOCATIONS

routes = ApiRoutes("pterodactyl application", access=Access.ADMIN, path_ids=APPLICATION_IDS)


@routes.patch(
    ROOT + "/{server_id}/details",
    summary="Pterodactyl: change a server's name, description and external id",
    permission="settings.rename",
    body=ServerDetails,
    response=CompatObject,
)
async def update_details(req: ApiRequest[Any, Any]) -> dict[str, Any]:
    body: ServerDetails = req.body
    server = req.server
    owner = await uuid_of(req.db, User, body.user)
    if owner != server.owner_id:
        detail = ErrorDetail(
            loc=["user"], msg="a server's owner cannot be changed here", type="not_supported"
        )
        raise InvalidRequest("invalid request body", details=[detail])
    await check_external_id(req.db, Server, body.external_id, server.id)
    if body.name != server.name:
        req.body = ServerRename(name=body.name)
        await native.rename_server(req)
    changes = {}
    if body.external_id != server.external_id:
        changes["external_id"] = body.external_id
        server.external_id = body.external_id
    if body.description is not None and body.description != server.description:
        changes["description"] = "changed"
        server.description = body.description
    if changes:
        await req.audit(
            "server.details.updated",
            target_type="server",
            target_id=str(server.id),
            details=changes,
        )
    await req.db.flush()
    return await server_object(req.db, server, frozenset())


@routes.patch(
    ROOT + "/{server_id}/build",
    summary="Pterodactyl: change a server's limits (our limits route)",
    permission=VIEW,
    body=ServerBuild,
    response=CompatObject,
    transactional=False,
    calls_node=True,
)
async def update_build(req: ApiRequest[Any, Any]) -> dict[str, Any]:
    body: ServerBuild = req.body
    unsupported = [
        name for name in ("add_allocations", "remove_allocations") if getattr(body, name)
    ]
    async with req.transaction(write=False) as db:
        primary = (await allocations_of(db, req.server.id))[:1]
    if body.allocation is not None and [a.compat_id for a in primary] != [body.allocation]:
        unsupported.append("allocation")
    if unsupported:
        details = [
            ErrorDetail(loc=[name], msg="cannot be changed here", type="not_supported")
            for name in unsupported
        ]
        raise InvalidRequest("invalid request body", details=details)
    limits = body.limits
    values = {
        "memory_mib": limits.memory if limits else body.memory,
        # Not sent, not changed (a build that names only the memory keeps the swap).
        "swap_mib": limits.swap if limits else body.swap,
        "cpu_percent": limits.cpu if limits else body.cpu,
        "disk_mib": limits.disk if limits else body.disk,
        # The server's port limit; above what one spec holds, that many (docs).
        "port_limit": None
        if body.feature_limits is None or body.feature_limits.allocations is None
        else min(body.feature_limits.allocations, MAX_ALLOCATIONS),
    }
    try:
        req.body = LimitsUpdate.model_validate({k: v for k, v in values.items() if v is not None})
    except ValidationError as err:
        raise renamed(InvalidRequest.from_validation(err, "invalid request body")) from err
    try:
        await server_limits.update_limits(req)
    except InvalidRequest as err:
        raise renamed(err) from err
    except Conflict as err:
        raise DisplayError(err.message) from err
    kept: dict[str, Any] = {
        "io": limits.io if limits else body.io,
        "threads": limits.threads if limits else body.threads,
        "oom_disabled": limits.oom_disabled if limits else body.oom_disabled,
    }
    if body.feature_limits is not None:
        kept.update(body.feature_limits.model_dump(exclude={"allocations"}))
    async with req.transaction() as db:
        server = await records.get_or_404(db, Server, req.server.id, "server")
        server.compat_fields = {
            **(server.compat_fields or {}),
            **{k: v for k, v in kept.items() if v is not None},
        }
        await db.flush()
        return await server_object(db, server, frozenset({"allocations"}))


@routes.patch(
    ROOT + "/{server_id}/startup",
    summary="Pterodactyl: change a server's variables and image",
    permission="startup.update",
    body=ServerStartup,
    response=CompatObject,
    transactional=False,
    calls_node=True,
)
async def update_startup(req: ApiRequest[Any, Any]) -> dict[str, Any]:
    body: ServerStartup = req.body
    async with req.transaction(write=False) as db:
        blueprint = await records.get_or_404(db, Blueprint, req.server.blueprint_id, "egg")
        if body.egg is not None and body.egg != blueprint.compat_id:
            detail = ErrorDetail(
                loc=["egg"], msg="a server's egg cannot be changed here", type="not_supported"
            )
            raise InvalidRequest("invalid request body", details=[detail])
    environment = environment_of(blueprint, body.environment)
    image = body.image if body.image not in (None, req.server.image) else None
    req.body = StartupUpdate(variables=environment, image=image)
    try:
        await server_settings.update_startup(req)
    except InvalidRequest as err:
        raise renamed(err) from err
    async with req.transaction() as db:
        server = await records.get_or_404(db, Server, req.server.id, "server")
        server.compat_fields = {
            **(server.compat_fields or {}),
            "startup": body.startup,
            "skip_scripts": body.skip_scripts,
        }
        await db.flush()
        return await server_object(db, server, frozenset())


@routes.post(
    ROOT + "/{server_id}/suspend",
    summary="Pterodactyl: suspend a server",
    permission=VIEW,
    status=204,
    transactional=False,
    calls_node=True,
)
async def suspend(req: ApiRequest[Any, Any]) -> None:
    await native.suspend(req)


@routes.post(
    ROOT + "/{server_id}/unsuspend",
    summary="Pterodactyl: lift a suspension",
    permission=VIEW,
    status=204,
)
async def unsuspend(req: ApiRequest[Any, Any]) -> None:
    await native.unsuspend(req)


@routes.post(
    ROOT + "/{server_id}/reinstall",
    summary="Pterodactyl: reinstall a server",
    permission="settings.reinstall",
    status=204,
    transactional=False,
    calls_node=True,
)
async def reinstall(req: ApiRequest[Any, Any]) -> None:
    await native.reinstall(req)


@routes.delete(
    ROOT + "/{server_id}",
    summary="Pterodactyl: delete a server",
    permission=VIEW,
    status=204,
    transactional=False,
    calls_node=True,
)
async def delete_server(req: ApiRequest[Any, Any]) -> None:
    await native.delete_server(req)


@routes.delete(
    ROOT + "/{server_id}/force",
    summary="Pterodactyl: delete a server (the node must answer here too)",
    permission=VIEW,
    status=204,
    transactional=False,
    calls_node=True,
)
async def force_delete_server(req: ApiRequest[Any, Any]) -> None:
    await native.delete_server(req)
