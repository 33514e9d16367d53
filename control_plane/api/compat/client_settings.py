"""``/api/client``: the account, and a server's startup variables, settings (rename,
reinstall) and ports, over our routes (``server_settings.py``, ``servers.py``)."""

from __future__ import annotations

from typing import Any

from pydantic import Field
from sqlalchemy import select

from control_plane.api import server_settings
from control_plane.api import servers as native
from control_plane.api.compat.envelope import CompatObject, collection, item
from control_plane.api.compat.errors import DisplayError
from control_plane.api.compat.ids import CLIENT_ALLOCATION_IDS
from control_plane.api.routing import ApiRequest, ApiRoutes
from control_plane.db.models import Allocation, User
from control_plane.errors import Conflict
from control_plane.schemas.common import Input
from control_plane.schemas.servers import AllocationOut, ServerRename, StartupOut, StartupUpdate
from control_plane.services import records
from control_plane.services.servers.placement import allocations_of

routes = ApiRoutes("pterodactyl client", path_ids=CLIENT_ALLOCATION_IDS)
SERVER = "/api/client/servers/{server_id}"


class Rename(Input):
    name: str = Field(min_length=1, max_length=64)
    description: str | None = Field(None, max_length=2048)


class Variable(Input):
    key: str = Field(min_length=1, max_length=191)
    value: str = Field(max_length=4096)


@routes.get("/api/client/account", summary="Pterodactyl: my account", response=CompatObject)
async def account(req: ApiRequest[Any, Any]) -> dict[str, Any]:
    user = await records.get_or_404(req.db, User, req.me.user_id, "user")
    extra = user.compat_fields or {}
    return item(
        "user",
        {
            "id": user.compat_id,
            "admin": user.is_admin,
            "username": user.username,
            "email": user.email,
            "first_name": extra.get("first_name", ""),
            "last_name": extra.get("last_name", ""),
            "language": extra.get("language", "en"),
        },
    )


def _variables(startup: StartupOut) -> list[dict[str, Any]]:
    return [
        {
            "name": v.name,
            "description": v.description,
            "env_variable": v.env,
            "default_value": "",
            "server_value": v.value,
            "is_editable": v.editable,
            "rules": "",
        }
        for v in startup.variables
    ]


@routes.get(
    SERVER + "/startup",
    summary="Pterodactyl: the startup command and the variables I may see",
    permission="startup.read",
    response=CompatObject,
)
async def startup(req: ApiRequest[Any, Any]) -> dict[str, Any]:
    shown = await server_settings.get_startup(req)
    assert isinstance(shown, StartupOut)
    answer = collection("egg_variable", _variables(shown))
    answer["meta"] = {
        "startup_command": " ".join(shown.command),
        "raw_startup_command": " ".join(shown.command),
        "docker_images": {image: image for image in shown.images},
    }
    return answer


@routes.put(
    SERVER + "/startup/variable",
    summary="Pterodactyl: change one variable I may edit",
    permission="startup.update",
    body=Variable,
    response=CompatObject,
    transactional=False,
    calls_node=True,
)
async def set_variable(req: ApiRequest[Any, Any]) -> dict[str, Any]:
    change: Variable = req.body
    req.body = StartupUpdate(variables={change.key: change.value})
    shown = await server_settings.update_startup(req)
    assert isinstance(shown, StartupOut)
    changed = [v for v in _variables(shown) if v["env_variable"] == change.key]
    return item("egg_variable", changed[0] if changed else {"env_variable": change.key})


@routes.post(
    SERVER + "/settings/rename",
    summary="Pterodactyl: rename the server",
    permission="settings.rename",
    body=Rename,
    status=204,
)
async def rename(req: ApiRequest[Any, Any]) -> None:
    change: Rename = req.body
    req.body = ServerRename(name=change.name)
    await native.rename_server(req)
    if change.description is not None:
        req.server.description = change.description


@routes.post(
    SERVER + "/settings/reinstall",
    summary="Pterodactyl: reinstall the server (it must be stopped)",
    permission="settings.reinstall",
    status=202,
    transactional=False,
    calls_node=True,
)
async def reinstall(req: ApiRequest[Any, Any]) -> None:
    await native.reinstall(req)


@routes.get(
    SERVER + "/network/allocations",
    summary="Pterodactyl: the server's ports",
    permission="allocations.read",
    response=CompatObject,
)
async def allocations(req: ApiRequest[Any, Any]) -> dict[str, Any]:
    rows = await allocations_of(req.db, req.server.id)
    numbers = {a.id: a.compat_id for a in rows}
    return collection(
        "allocation",
        [_allocation(numbers[a.id], a) for a in server_settings.allocations_out(rows)],
    )


def _allocation(number: int | None, allocation: AllocationOut) -> dict[str, Any]:
    return {
        "id": number,
        "ip": allocation.ip,
        "ip_alias": None,
        "port": allocation.port,
        "notes": allocation.notes,
        "is_default": allocation.primary,
    }


class AllocationNotes(Input):
    notes: str | None = Field(None, max_length=255)


async def _changed(req: ApiRequest[Any, Any], *, notes: object, main: bool) -> dict[str, Any]:
    allocation_id = req.uuid_param("allocation_id")
    changed = await server_settings.change_allocation(req, allocation_id, notes=notes, main=main)
    async with req.transaction(write=False) as db:
        number = await db.scalar(select(Allocation.compat_id).where(Allocation.id == changed.id))
    return item("allocation", _allocation(number, changed))


@routes.post(
    SERVER + "/network/allocations/{allocation_id}",
    summary="Pterodactyl: note what one of the server's ports is for",
    permission="allocations.update",
    body=AllocationNotes,
    response=CompatObject,
    transactional=False,
)
async def allocation_notes(req: ApiRequest[Any, Any]) -> dict[str, Any]:
    return await _changed(req, notes=req.body.notes, main=False)


@routes.post(
    SERVER + "/network/allocations/{allocation_id}/primary",
    summary="Pterodactyl: make one of the server's ports the main one",
    permission="allocations.update",
    response=CompatObject,
    transactional=False,
    calls_node=True,
)
async def allocation_primary(req: ApiRequest[Any, Any]) -> dict[str, Any]:
    return await _changed(req, notes=server_settings.UNCHANGED, main=True)


@routes.post(
    SERVER + "/network/allocations",
    summary="Pterodactyl: take one more of the node's free ports, up to the server's limit",
    permission="allocations.create",
    response=CompatObject,
    transactional=False,
    calls_node=True,
)
async def allocation_create(req: ApiRequest[Any, Any]) -> dict[str, Any]:
    try:
        taken = await server_settings.take_free_port(req)
    except Conflict as err:  # the limit, or no free port: what the user is told
        raise DisplayError(err.message) from err
    async with req.transaction(write=False) as db:
        number = await db.scalar(select(Allocation.compat_id).where(Allocation.id == taken.id))
    return item("allocation", _allocation(number, taken))


@routes.delete(
    SERVER + "/network/allocations/{allocation_id}",
    summary="Pterodactyl: give one of the server's ports back (not the main one; the server"
    " stopped)",
    permission="allocations.delete",
    status=204,
    transactional=False,
    calls_node=True,
)
async def allocation_delete(req: ApiRequest[Any, Any]) -> None:
    try:
        await server_settings.give_back_port(req, req.uuid_param("allocation_id"))
    except Conflict as err:
        raise DisplayError(err.message) from err
