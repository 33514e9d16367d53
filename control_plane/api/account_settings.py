"""The signed-in user's own settings: their time zone (schedules on their servers run by it)."""

from __future__ import annotations

from typing import Any

from control_plane.api.routing import ApiRequest, ApiRoutes
from control_plane.db.models import User
from control_plane.errors import Unauthenticated
from control_plane.keys import SCHEDULER
from control_plane.schemas.schedules import AccountSettings, AccountSettingsUpdate
from control_plane.services.schedules import store

routes = ApiRoutes("account")
PATH = "/api/v1/account/settings"


async def _me(req: ApiRequest[Any, Any]) -> User:
    user = await req.db.get(User, req.me.user_id)
    if user is None:
        raise Unauthenticated("authentication required")
    return user


@routes.get(PATH, summary="My settings", response=AccountSettings)
async def get_settings(req: ApiRequest[Any, Any]) -> AccountSettings:
    return AccountSettings.model_validate(await _me(req))


@routes.patch(
    PATH,
    summary="Change my settings (an IANA time zone such as Europe/Berlin)",
    body=AccountSettingsUpdate,
    response=AccountSettings,
)
async def update_settings(req: ApiRequest[AccountSettingsUpdate, Any]) -> AccountSettings:
    user = await _me(req)
    if user.timezone != req.body.timezone:
        user.timezone = req.body.timezone
        await req.db.flush()
        # Schedules on my servers run in my zone: their next runs move with it.
        await store.reschedule_owner(req.db, user.id, req.http.app[SCHEDULER].clock.now())
        await req.audit(
            "user.settings.updated",
            target_type="user",
            target_id=str(user.id),
            details={"timezone": user.timezone},
        )
    return AccountSettings.model_validate(user)
