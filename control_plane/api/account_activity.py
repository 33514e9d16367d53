"""The signed-in user's own activity: the audit entries of what they did themselves.

Only rows whose actor is the caller are ever read (administrators read everyone's through
``/api/v1/audit``); the page ``/account/activity`` shows the same rows.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.api.routing import ApiRequest, ApiRoutes
from control_plane.db.models import AuditEntry
from control_plane.schemas.audit import ActivityOut
from control_plane.schemas.common import Page, PageMeta, PageQuery

routes = ApiRoutes("account")


async def own_activity(
    db: AsyncSession, user_id: uuid.UUID, query: PageQuery, action_part: str | None = None
) -> Page[ActivityOut]:
    """One page of ``user_id``'s own audit entries, newest first; only actions containing
    ``action_part`` when it is given."""
    mine = [AuditEntry.actor_id == user_id]
    if action_part:
        mine.append(AuditEntry.action.contains(action_part, autoescape=True))
    total = await db.scalar(select(func.count()).select_from(AuditEntry).where(*mine)) or 0
    rows = await db.scalars(
        select(AuditEntry)
        .where(*mine)
        .order_by(AuditEntry.id.desc())
        .offset(query.offset)
        .limit(query.per_page)
    )
    return Page[ActivityOut](
        data=[ActivityOut.model_validate(row) for row in rows],
        meta=PageMeta(page=query.page, per_page=query.per_page, total=total),
    )


@routes.get(
    "/api/v1/account/activity",
    summary="What I did: my own audit entries, newest first",
    query=PageQuery,
    response=Page[ActivityOut],
)
async def list_activity(req: ApiRequest[Any, PageQuery]) -> Page[ActivityOut]:
    return await own_activity(req.db, req.me.user_id, req.query)
