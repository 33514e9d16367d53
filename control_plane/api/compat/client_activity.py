"""``GET /api/client/account/activity``: Pterodactyl's activity log of the key's user, over
our own (``account_activity.py``): only the entries whose actor is the caller, newest first.

The entries are our audit records: ``event`` is our action name (``ssh_key.added``, not
Pterodactyl's ``user:ssh-key.create``), ``properties`` our details, and ``is_api`` is always
false because an audit record does not say which credential acted (docs/pterodactyl-compat.md).
"""

from __future__ import annotations

import hashlib
from typing import Any

from pydantic import Field

from control_plane.api.account_activity import own_activity
from control_plane.api.compat.envelope import CompatObject, CompatQuery, item, page, timestamp
from control_plane.api.routing import ApiRequest, ApiRoutes
from control_plane.schemas.audit import ActivityOut
from control_plane.schemas.common import PageQuery

routes = ApiRoutes("pterodactyl client")


class ActivityQuery(CompatQuery):
    # Pterodactyl's page of activity is 25 entries (at most 100).
    per_page: int = Field(25, ge=1, le=100)
    event: str | None = Field(None, alias="filter[event]", max_length=64)


def _entry(entry: ActivityOut) -> dict[str, Any]:
    return {
        # Pterodactyl's key for rendering, not a secret: a hash of the row's id, as there.
        "id": hashlib.sha1(str(entry.id).encode(), usedforsecurity=False).hexdigest(),
        "batch": None,
        "event": entry.action,
        "is_api": False,
        "ip": entry.ip,
        "description": None,
        "properties": entry.details,
        "has_additional_metadata": bool(entry.user_agent),
        "timestamp": timestamp(entry.created_at),
    }


@routes.get("/api/client/account/activity", summary="Pterodactyl: what I did (my own audit "
            "entries, newest first; filter[event] matches a part of the action)",
            query=ActivityQuery, response=CompatObject)  # fmt: skip
async def list_account_activity(req: ApiRequest[Any, ActivityQuery]) -> dict[str, Any]:
    q = req.query
    found = await own_activity(
        req.db, req.me.user_id, PageQuery(page=q.page, per_page=q.per_page), q.event
    )
    return page(req, [item("activity_log", _entry(e)) for e in found.data], found.meta.total)
