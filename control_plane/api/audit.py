"""Reading the audit trail (administrators)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, func, select

from control_plane.api.routing import Access, ApiRequest, ApiRoutes
from control_plane.db.models import AuditEntry
from control_plane.schemas.audit import AuditEntryOut, AuditQuery
from control_plane.schemas.common import Page, PageMeta

routes = ApiRoutes("audit", access=Access.ADMIN)


def filtered(query: AuditQuery) -> Select[AuditEntry]:
    statement = select(AuditEntry)
    if query.action:
        if query.action.endswith("."):
            statement = statement.where(AuditEntry.action.startswith(query.action, autoescape=True))
        else:
            statement = statement.where(AuditEntry.action == query.action)
    if query.actor_id:
        statement = statement.where(AuditEntry.actor_id == query.actor_id)
    if query.target_type:
        statement = statement.where(AuditEntry.target_type == query.target_type)
    if query.target_id:
        statement = statement.where(AuditEntry.target_id == query.target_id)
    if query.since:
        statement = statement.where(AuditEntry.created_at >= query.since)
    if query.until:
        statement = statement.where(AuditEntry.created_at < query.until)
    return statement


@routes.get(
    "/api/v1/audit",
    summary="Filter and page through the audit trail, newest first",
    query=AuditQuery,
    response=Page[AuditEntryOut],
)
async def list_audit(req: ApiRequest[Any, AuditQuery]) -> Page[AuditEntryOut]:
    statement = filtered(req.query)
    total = await req.db.scalar(select(func.count()).select_from(statement.subquery())) or 0
    rows = await req.db.scalars(
        statement.order_by(AuditEntry.id.desc()).offset(req.query.offset).limit(req.query.per_page)
    )
    return Page[AuditEntryOut](
        data=[AuditEntryOut.model_validate(r) for r in rows],
        meta=PageMeta(page=req.query.page, per_page=req.query.per_page, total=total),
    )
