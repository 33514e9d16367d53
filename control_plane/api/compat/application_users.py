"""``/api/application/users``: accounts, for billing systems (administrators' keys)."""

from __future__ import annotations

import secrets
import uuid
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.api import users as native
from control_plane.api.compat.envelope import CompatObject, CompatQuery, item, page
from control_plane.api.compat.errors import DisplayError
from control_plane.api.compat.ids import APPLICATION_IDS, EXTERNAL_USER
from control_plane.api.compat.transform import user_attributes
from control_plane.api.routing import Access, ApiRequest, ApiRoutes
from control_plane.db.models import User
from control_plane.errors import Conflict, InvalidRequest
from control_plane.schemas.auth import UserOut
from control_plane.schemas.compat import CompatUserCreate, CompatUserUpdate, UserQuery
from control_plane.schemas.users import UserCreate, UserUpdate
from control_plane.services import records
from control_plane.services import users as user_service
from shared.errors import ErrorDetail

routes = ApiRoutes(
    "pterodactyl application",
    access=Access.ADMIN,
    path_ids={**APPLICATION_IDS, **EXTERNAL_USER},
)
ROOT = "/api/application/users"


async def check_external_id(
    db: AsyncSession, model: Any, external_id: str | None, row_id: uuid.UUID | None = None
) -> None:
    """422 (Pterodactyl's ``unique`` rule) when another row has ``external_id``."""
    if external_id is None:
        return
    holder = await db.scalar(select(model.id).where(model.external_id == external_id))
    if holder is not None and holder != row_id:
        detail = ErrorDetail(loc=["external_id"], msg="has already been taken", type="unique")
        raise InvalidRequest("invalid request body", details=[detail])


async def _answer(req: ApiRequest[Any, Any], user_id: uuid.UUID) -> dict[str, Any]:
    user = await records.get_or_404(req.db, User, user_id, "user")
    return item("user", await user_attributes(req.db, user))


@routes.get(ROOT, summary="Pterodactyl: list users", query=UserQuery, response=CompatObject)
async def list_users(req: ApiRequest[Any, UserQuery]) -> dict[str, Any]:
    q = req.query
    statement = select(User)
    for column, value in (
        (User.email, q.email),
        (User.username, q.username),
        (User.external_id, q.external_id),
    ):
        if value is not None:
            # Pterodactyl's filters match a part of the value.
            statement = statement.where(column.contains(value, autoescape=True))
    if q.uuid is not None:
        try:
            statement = statement.where(User.id == uuid.UUID(q.uuid))
        except ValueError:
            statement = statement.where(User.id.is_(None))
    total = await req.db.scalar(select(func.count()).select_from(statement.subquery())) or 0
    rows = await req.db.scalars(
        statement.order_by(User.compat_id).offset(q.offset).limit(q.per_page)
    )
    data = [item("user", await user_attributes(req.db, user)) for user in rows]
    return page(req, data, total)


@routes.get(
    ROOT + "/{user_id}", summary="Pterodactyl: get a user", query=CompatQuery, response=CompatObject
)
async def get_user(req: ApiRequest[Any, Any]) -> dict[str, Any]:
    return await _answer(req, req.uuid_param("user_id"))


@routes.get(
    ROOT + "/external/{external_id}",
    summary="Pterodactyl: get a user by the billing system's id",
    query=CompatQuery,
    response=CompatObject,
)
async def get_external_user(req: ApiRequest[Any, Any]) -> dict[str, Any]:
    return await _answer(req, req.uuid_param("external_id"))


@routes.post(
    ROOT,
    summary="Pterodactyl: create a user",
    body=CompatUserCreate,
    response=CompatObject,
    status=201,
)
async def create_user(req: ApiRequest[Any, Any]) -> dict[str, Any]:
    body: CompatUserCreate = req.body
    await check_external_id(req.db, User, body.external_id)
    address = user_service.normalise_email(body.email)
    if await req.db.scalar(select(User.id).where(User.email == address)) is not None:
        detail = ErrorDetail(loc=["email"], msg="has already been taken", type="unique")
        raise InvalidRequest("invalid request body", details=[detail])
    # Without a password (Pterodactyl mails a link instead), the account gets a random one
    # nobody knows: an administrator sets one later (PATCH with "password").
    password = body.password or secrets.token_urlsafe(24)
    req.body = UserCreate(email=body.email, password=password, is_admin=body.root_admin)
    created = await native.create_user(req)
    assert isinstance(created, UserOut)
    user = await records.get_or_404(req.db, User, created.id, "user")
    user.external_id = body.external_id
    user.compat_fields = {
        "first_name": body.first_name,
        "last_name": body.last_name,
        "language": body.language,
        "username": body.username,
    }
    await req.db.flush()
    return item("user", await user_attributes(req.db, user))


@routes.patch(
    ROOT + "/{user_id}",
    summary="Pterodactyl: update a user (password included)",
    body=CompatUserUpdate,
    response=CompatObject,
)
async def update_user(req: ApiRequest[Any, Any]) -> dict[str, Any]:
    body: CompatUserUpdate = req.body
    user = await records.get_or_404(req.db, User, req.uuid_param("user_id"), "user")
    if user.id == req.me.user_id and (body.email is not None or body.password is not None):
        # A key is not its owner: a leaked one must not take over the account it belongs to
        # (as ours, which change an address or password only in a signed-in session, with
        # the current password).
        raise Conflict(
            "change your own e-mail address or password on your account page, with your "
            "current password, not with an API key"
        )
    await check_external_id(req.db, User, body.external_id, user.id)
    if body.root_admin is not None and body.root_admin != user.is_admin:
        # Promotion and demotion are ours, with their rules (no demoting oneself).
        compat = req.body
        req.body = UserUpdate(is_admin=body.root_admin)
        await native.update_user(req)
        req.body = compat
    changed: list[str] = []
    if body.email is not None and body.email.strip().lower() != user.email:
        await user_service.set_email(req.db, user, body.email)
        changed.append("email")
    if body.password is not None:
        await user_service.set_password(req.db, user, body.password, req.settings.bcrypt_cost)
        changed.append("password")
    extra = dict(user.compat_fields or {})
    for name in ("first_name", "last_name", "language", "username"):
        value = getattr(body, name)
        if value is not None and extra.get(name) != value:
            extra[name] = value
            changed.append(name)
    user.compat_fields = extra
    if body.external_id is not None and body.external_id != user.external_id:
        user.external_id = body.external_id
        changed.append("external_id")
    if changed:
        await req.audit(
            "user.updated", target_type="user", target_id=str(user.id), details={"changed": changed}
        )
    await req.db.flush()
    return item("user", await user_attributes(req.db, user))


@routes.delete(ROOT + "/{user_id}", summary="Pterodactyl: delete a user", status=204)
async def delete_user(req: ApiRequest[Any, Any]) -> None:
    try:
        await native.delete_user(req)
    except Conflict as err:
        # Pterodactyl answers a user who still owns servers with its 400.
        raise DisplayError(err.message) from err
