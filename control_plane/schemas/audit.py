"""The audit trail as the API shows it."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from pydantic import Field

from control_plane.schemas.common import Output, PageQuery


class AuditQuery(PageQuery):
    action: str | None = Field(
        None, max_length=64, description="exact action, or a prefix ending in '.'"
    )
    actor_id: uuid.UUID | None = None
    target_type: str | None = Field(None, max_length=32)
    target_id: str | None = Field(None, max_length=64)
    since: dt.datetime | None = None
    until: dt.datetime | None = None


class AuditEntryOut(Output):
    id: int
    created_at: dt.datetime
    actor_id: uuid.UUID | None
    actor_email: str | None
    action: str
    target_type: str | None
    target_id: str | None
    ip: str | None
    user_agent: str | None
    details: dict[str, Any]


class AuditChainOut(Output):
    """The hash chain's state: ``problems`` names each break (docs/audit.md), at most 100."""

    intact: bool
    rows: int
    problems: list[str]


class ActivityOut(Output):
    """One of my own audit entries (the actor is me, so it is not repeated)."""

    id: int
    created_at: dt.datetime
    action: str
    target_type: str | None
    target_id: str | None
    ip: str | None
    user_agent: str | None
    details: dict[str, Any]
