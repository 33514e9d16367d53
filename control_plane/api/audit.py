"""Reading the audit trail (administrators)."""

from __future__ import annotations

from typing import Any, Final

from sqlalchemy import Select, func, select

from control_plane.api.routing import Access, ApiRequest, ApiRoutes
from control_plane.db.models import AuditEntry
from control_plane.schemas.audit import AuditChainOut, AuditEntryOut, AuditQuery
from control_plane.schemas.common import Page, PageMeta
from control_plane.services.audit import verify_chain

routes = ApiRoutes("audit", access=Access.ADMIN)
# A trail broken everywhere names its first breaks; the command line lists them all.
MAX_PROBLEMS: Final = 100


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


@routes.get(
    "/api/v1/audit/verify",
    summary="Check the audit trail's hash chain (as `stellar-cp audit verify` does)",
    response=AuditChainOut,
    transactional=False,
)
async def verify_audit_chain(req: ApiRequest[Any, Any]) -> AuditChainOut:
    """Reads the whole trail in batches, in one read-only transaction (one snapshot)."""
    async with req.transaction(write=False) as db:
        rows = await db.scalar(select(func.count()).select_from(AuditEntry)) or 0
        problems = await verify_chain(db)
    return AuditChainOut(intact=not problems, rows=rows, problems=problems[:MAX_PROBLEMS])
