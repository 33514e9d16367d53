"""The alerts a user gets by mail (opt-in; docs/email.md)."""

from __future__ import annotations

from typing import Any

from control_plane.api.routing import ApiRequest, ApiRoutes
from control_plane.db.models import AlertPreferences
from control_plane.errors import Conflict
from control_plane.schemas.mail import AlertPreferencesIO
from control_plane.services.mail_flows import NO_MAIL

routes = ApiRoutes("account")
PATH = "/api/v1/account/alerts"


def _out(row: AlertPreferences | None) -> AlertPreferencesIO:
    if row is None:
        return AlertPreferencesIO()
    return AlertPreferencesIO(
        server_crashed=row.server_crashed,
        backup_failed=row.backup_failed,
        disk_full=row.disk_full,
        new_sign_in=row.new_sign_in,
    )


@routes.get(PATH, summary="The alerts mailed to me", response=AlertPreferencesIO)
async def get_alerts(req: ApiRequest[Any, Any]) -> AlertPreferencesIO:
    return _out(await req.db.get(AlertPreferences, req.me.user_id))


@routes.put(
    PATH,
    summary="Choose the alerts mailed to me (409 when this panel sends no mail)",
    body=AlertPreferencesIO,
    response=AlertPreferencesIO,
)
async def set_alerts(req: ApiRequest[AlertPreferencesIO, Any]) -> AlertPreferencesIO:
    wanted = req.body
    if not req.settings.mail_enabled and any(wanted.model_dump().values()):
        raise Conflict(f"alerts are mailed: {NO_MAIL}")
    row = await req.db.get(AlertPreferences, req.me.user_id)
    if row is None:
        row = AlertPreferences(user_id=req.me.user_id)
        req.db.add(row)
    for name, value in wanted.model_dump().items():
        setattr(row, name, value)
    await req.audit(
        "user.alerts.updated",
        target_type="user",
        target_id=str(req.me.user_id),
        details=wanted.model_dump(),
    )
    return _out(row)
