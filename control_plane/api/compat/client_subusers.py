"""``/api/client/servers/{identifier}/users``: sub-users over ours (``subusers.py``): the
same ``users.*`` permissions and the same rule that nobody grants what they lack.

Pterodactyl's permission names are turned into our nodes (each name into every node shown
with it, see ``client.PERMISSION_NAMES``); a sub-user is named in paths by the ``uuid`` its
listing shows (our sub-user id)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Final

from pydantic import Field

from control_plane.api import subusers as native
from control_plane.api.compat.client import PERMISSION_NAMES, pterodactyl_permissions
from control_plane.api.compat.envelope import CompatObject, collection, item, timestamp
from control_plane.api.compat.ids import CLIENT_IDS
from control_plane.api.routing import ApiRequest, ApiRoutes
from control_plane.errors import InvalidRequest
from control_plane.schemas.common import Input
from control_plane.schemas.servers import SubuserCreate, SubuserList, SubuserOut, SubuserUpdate
from control_plane.security.permissions import covers, expand
from control_plane.services import subusers as service
from shared.errors import ErrorDetail

routes = ApiRoutes("pterodactyl client", path_ids=CLIENT_IDS)
USERS = "/api/client/servers/{server_id}/users"

# Pterodactyl's name → our permission nodes shown with it.
OUR_NODES: Final[dict[str, list[str]]] = defaultdict(list)
for _node, _names in sorted(PERMISSION_NAMES.items()):
    for _name in _names:
        OUR_NODES[_name].append(_node)


class CompatSubuserCreate(Input):
    email: str = Field(min_length=3, max_length=254)
    permissions: list[str] = Field(max_length=64)


class CompatSubuserUpdate(Input):
    permissions: list[str] = Field(max_length=64)


def our_permissions(names: list[str]) -> list[str]:
    """Our nodes for Pterodactyl's names; an unknown name is a 422 naming it, and so is a
    name given without the others one of our nodes is shown with (Pterodactyl's
    ``file.read`` lists a directory only, our ``files.read`` also reads every file: granted
    for ``file.read`` alone it would give more than was asked)."""
    problems = [
        ErrorDetail(loc=["permissions", i], msg="unknown permission", type="in")
        for i, name in enumerate(names)
        if name not in OUR_NODES
    ]
    given = set(names)
    for i, name in enumerate(names):
        for node in OUR_NODES.get(name, ()):
            missing = [other for other in PERMISSION_NAMES[node] if other not in given]
            if missing:
                together = " and ".join(PERMISSION_NAMES[node])
                problems.append(
                    ErrorDetail(
                        loc=["permissions", i],
                        msg=f"{together} are one permission here ({node}): give "
                        f"{', '.join(missing)} as well, or neither",
                        type="value_error",
                    )
                )
    if problems:
        raise InvalidRequest("invalid request body", details=problems)
    return sorted({node for name in names for node in OUR_NODES[name]})


def _subuser(out: SubuserOut) -> dict[str, Any]:
    return item(
        "server_subuser",
        {
            "uuid": str(out.id),
            "username": out.email.split("@", 1)[0],
            "email": out.email,
            "image": None,
            "2fa_enabled": False,
            "created_at": timestamp(out.created_at),
            "permissions": pterodactyl_permissions(out.permissions),
        },
    )


@routes.get(
    USERS,
    summary="Pterodactyl: the server's sub-users",
    permission="users.read",
    response=CompatObject,
)
async def list_subusers(req: ApiRequest[Any, Any]) -> dict[str, Any]:
    listed = await native.list_subusers(req)
    assert isinstance(listed, SubuserList)
    return collection("server_subuser", [_subuser(s)["attributes"] for s in listed.data])


@routes.post(
    USERS,
    summary="Pterodactyl: give another user access",
    permission="users.create",
    body=CompatSubuserCreate,
    response=CompatObject,
)
async def add_subuser(req: ApiRequest[Any, Any]) -> dict[str, Any]:
    body: CompatSubuserCreate = req.body
    req.body = SubuserCreate(email=body.email, permissions=our_permissions(body.permissions))
    made = await native.add_subuser(req)
    assert isinstance(made, SubuserOut)
    return _subuser(made)


@routes.post(
    USERS + "/{subuser_id}",
    summary="Pterodactyl: change a sub-user's permissions",
    permission="users.update",
    body=CompatSubuserUpdate,
    response=CompatObject,
)
async def update_subuser(req: ApiRequest[Any, Any]) -> dict[str, Any]:
    """Pterodactyl's names replace what they name; our nodes that have no Pterodactyl name
    (``webhooks.*``) stay as they were — a bot cannot see them, so it cannot mean to take
    them away — where the caller could grant them again."""
    body: CompatSubuserUpdate = req.body
    held = await service.get_subuser(req.db, req.server, req.uuid_param("subuser_id"))
    unnamed = [
        node
        for node in sorted(expand(held.permissions))
        if node not in PERMISSION_NAMES
        and (req.access.role != "subuser" or covers(req.access.permissions, node))
    ]
    req.body = SubuserUpdate(permissions=our_permissions(body.permissions) + unnamed)
    changed = await native.update_subuser(req)
    assert isinstance(changed, SubuserOut)
    return _subuser(changed)


@routes.delete(
    USERS + "/{subuser_id}",
    summary="Pterodactyl: remove a sub-user",
    permission="users.delete",
    status=204,
)
async def delete_subuser(req: ApiRequest[Any, Any]) -> None:
    await native.delete_subuser(req)
