"""Webhooks and their delivery log as the API takes and shows them."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Literal

from pydantic import Field, field_validator

from control_plane.schemas.common import Input, Output, PageQuery
from control_plane.services.webhooks.catalogue import EventType, WebhookFormat

_EVENTS_DESCRIPTION = (
    "what to send: server.state, server.crashed, server.power, server.backup.completed, "
    "server.backup.failed, server.install.finished, user.signed_in, or audit (every audited "
    "action in the webhook's scope)"
)


def _unique(events: list[EventType] | None) -> list[EventType] | None:
    if events is not None and len(set(events)) != len(events):
        raise ValueError("an event type is listed twice")
    return events


class WebhookCreate(Input):
    name: str = Field(min_length=1, max_length=64)
    url: str = Field(
        min_length=1,
        max_length=2048,
        description="http(s); its host must resolve to public addresses only",
    )
    events: list[EventType] = Field(min_length=1, max_length=16, description=_EVENTS_DESCRIPTION)
    format: WebhookFormat = Field(
        "standard", description="standard (Standard Webhooks JSON) or discord (embeds)"
    )

    _events = field_validator("events")(_unique)


class WebhookUpdate(Input):
    name: str | None = Field(None, min_length=1, max_length=64)
    url: str | None = Field(None, min_length=1, max_length=2048)
    events: list[EventType] | None = Field(None, min_length=1, max_length=16)
    format: WebhookFormat | None = None
    enabled: bool | None = Field(None, description="true turns a disabled webhook back on")

    _events = field_validator("events")(_unique)


class WebhookOut(Output):
    id: uuid.UUID
    scope: Literal["account", "server", "panel"]
    server_id: uuid.UUID | None
    name: str
    url: str = Field(
        description="where it sends; a server's, to a sub-user who may not change it, only "
        "its origin followed by /… (the rest of a URL often holds its secret)"
    )
    format: WebhookFormat
    events: list[str]
    enabled: bool
    disabled_reason: str | None = Field(description="why the panel turned it off, if it did")
    disabled_at: dt.datetime | None
    created_at: dt.datetime


class WebhookCreated(WebhookOut):
    secret: str = Field(description="whsec_…: verifies signatures; shown this once")


class WebhookList(Output):
    data: list[WebhookOut]


class WebhookSecretOut(Output):
    secret: str = Field(description="the new whsec_… secret; shown this once")


class DeliveryQuery(PageQuery):
    status: Literal["pending", "delivered", "failed"] | None = None


class DeliveryOut(Output):
    id: uuid.UUID = Field(description="the webhook-id header of every attempt")
    event_type: str
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    created_at: dt.datetime
    last_attempt_at: dt.datetime | None
    next_attempt_at: dt.datetime | None
    response_status: int | None = Field(description="the last attempt's HTTP status")
    latency_ms: int | None = Field(description="how long the last attempt took")
    error: str | None
    delivered_at: dt.datetime | None
