"""Sub-users of a server. Nobody can grant a permission they do not hold."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from control_plane.api.routing import ApiRequest, ApiRoutes
from control_plane.api.sftp_sync import push_after_commit
from control_plane.db.models import Subuser, User
from control_plane.errors import Forbidden
from control_plane.keys import CONSOLES
from control_plane.schemas.servers import SubuserCreate, SubuserList, SubuserOut, SubuserUpdate
from control_plane.services import subusers as service

routes = ApiRoutes("sub-users")


def _out(subuser: Subuser, email: str) -> SubuserOut:
    return SubuserOut(
        id=subuser.id,
        user_id=subuser.user_id,
        email=email,
        permissions=list(subuser.permissions),
        created_at=subuser.created_at,
    )


def _checked(req: ApiRequest[Any, Any], permissions: list[str]) -> list[str]:
    try:
        return service.check_grant(req.access, permissions)
    except Forbidden as err:
        raise req.deny(err, action="server.subuser.grant_refused") from err


@routes.get(
    "/api/v1/servers/{server_id}/users",
    summary="List sub-users",
    permission="users.read",
    response=SubuserList,
)
async def list_subusers(req: ApiRequest[Any, Any]) -> SubuserList:
    rows = await req.db.execute(
        select(Subuser, User.email)
        .join(User, User.id == Subuser.user_id)
        .where(Subuser.server_id == req.server.id)
        .order_by(User.email)
    )
    return SubuserList(data=[_out(sub, email) for sub, email in rows])


@routes.post(
    "/api/v1/servers/{server_id}/users",
    summary="Give another user access with a set of permissions",
    permission="users.create",
    body=SubuserCreate,
    response=SubuserOut,
    status=201,
)
async def add_subuser(req: ApiRequest[SubuserCreate, Any]) -> SubuserOut:
    permissions = _checked(req, req.body.permissions)
    subuser, user = await service.add_subuser(
        req.db, req.server, email=req.body.email, permissions=permissions
    )
    await req.audit(
        "server.subuser.created",
        target_type="server",
        target_id=str(req.server.id),
        details={"user": str(user.id), "permissions": permissions},
    )
    push_after_commit(req, [req.server.node_id])
    return _out(subuser, user.email)


@routes.patch(
    "/api/v1/servers/{server_id}/users/{subuser_id}",
    summary="Change a sub-user's permissions (their open consoles close at once)",
    permission="users.update",
    body=SubuserUpdate,
    response=SubuserOut,
)
async def update_subuser(req: ApiRequest[SubuserUpdate, Any]) -> SubuserOut:
    subuser = await service.get_subuser(req.db, req.server, req.uuid_param("subuser_id"))
    permissions = _checked(req, req.body.permissions)
    subuser.permissions = permissions
    user = await req.db.get(User, subuser.user_id)
    await req.audit(
        "server.subuser.updated",
        target_type="server",
        target_id=str(req.server.id),
        details={"user": str(subuser.user_id), "permissions": permissions},
    )
    await req.db.flush()
    # The SFTP table first, the consoles last: a hook awaited after a console was closed
    # delayed the browser's close frame into an abnormal closure (test_end_to_end).
    push_after_commit(req, [req.server.node_id])
    req.after_commit(lambda: req.http.app[CONSOLES].close_for(req.server.id, subuser.user_id))
    return _out(subuser, user.email if user else "")


@routes.delete(
    "/api/v1/servers/{server_id}/users/{subuser_id}",
    summary="Remove a sub-user (their open consoles close at once)",
    permission="users.delete",
    status=204,
)
async def delete_subuser(req: ApiRequest[Any, Any]) -> None:
    subuser = await service.get_subuser(req.db, req.server, req.uuid_param("subuser_id"))
    user_id = subuser.user_id
    await req.db.delete(subuser)
    await req.audit(
        "server.subuser.deleted",
        target_type="server",
        target_id=str(req.server.id),
        details={"user": str(user_id)},
    )
    push_after_commit(req, [req.server.node_id])
    req.after_commit(lambda: req.http.app[CONSOLES].close_for(req.server.id, user_id))
