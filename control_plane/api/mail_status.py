"""Administrators' view of mail: the settings in force and the outbox (docs/email.md)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from control_plane.api.routing import Access, ApiRequest, ApiRoutes
from control_plane.db.models import OutboxMail
from control_plane.schemas.mail import MailStatusOut

routes = ApiRoutes("administration", access=Access.ADMIN)


@routes.get(
    "/api/v1/mail",
    summary="Mail settings, registration switches and the outbox's state",
    response=MailStatusOut,
)
async def mail_status(req: ApiRequest[Any, Any]) -> MailStatusOut:
    settings = req.settings
    pending = (OutboxMail.sent_at.is_(None), OutboxMail.failed_at.is_(None))
    queued = await req.db.scalar(select(func.count()).where(*pending))
    failed = await req.db.scalar(select(func.count()).where(OutboxMail.failed_at.is_not(None)))
    last_error = await req.db.scalar(
        select(OutboxMail.last_error)
        .where(*pending, OutboxMail.last_error.is_not(None))
        .order_by(OutboxMail.next_attempt_at.desc())
        .limit(1)
    )
    return MailStatusOut(
        enabled=settings.mail_enabled,
        smtp_host=settings.smtp_host,
        smtp_port=settings.smtp_port_number if settings.mail_enabled else None,
        smtp_security=settings.smtp_security,
        mail_from=settings.mail_from,
        registration=settings.registration_mode,
        require_email_verification=settings.require_email_verification,
        queued=int(queued or 0),
        failed=int(failed or 0),
        last_error=last_error,
    )
