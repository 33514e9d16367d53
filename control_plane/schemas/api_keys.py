"""API keys as their owners see them."""

from __future__ import annotations

import datetime as dt
import ipaddress
import uuid
from typing import Literal

from pydantic import Field, field_validator, model_validator

from control_plane.schemas.common import Input, Output
from control_plane.security.api_keys import Scope


class ApiKeyCreate(Input):
    name: str = Field(min_length=1, max_length=64)
    scopes: list[Scope] = Field(
        min_length=1,
        max_length=4,
        description=(
            "`read`: look (GET routes, console output, logs and stats); `write`: act as well "
            "(every action the owner may take; includes `read`); `admin` (administrators "
            "only): with `read` or `write`, the administration routes and other users' "
            "servers. Without `admin`, an administrator's key is an ordinary user's key. "
            "`metrics` (administrators only): read `/metrics` and the nodes' metrics; a "
            "scraper's key may hold it alone."
        ),
    )
    allowed_ips: list[str] = Field(default_factory=list, max_length=32)
    expires_at: dt.datetime | None = None
    kind: Literal["stellar", "application", "client"] = Field(
        "stellar",
        description=(
            "`stellar`: a key for this API (`stl_…`); `application`: a Pterodactyl "
            "application key (`ptla_…`, for `/api/application` only; needs the `admin` "
            "scope); `client`: a Pterodactyl client key (`ptlc_…`, for `/api/client` only)."
        ),
    )

    @model_validator(mode="after")
    def _application_keys_administer(self) -> ApiKeyCreate:
        if self.kind == "application" and Scope.ADMIN not in self.scopes:
            raise ValueError("an application key (ptla_) needs the admin scope")
        return self

    @field_validator("scopes")
    @classmethod
    def _acts(cls, value: list[Scope]) -> list[Scope]:
        if value == [Scope.METRICS] * len(value):
            return value  # a scraper's key: it reads metrics and nothing else
        if not {Scope.READ, Scope.WRITE} & set(value):
            raise ValueError("give read or write as well: admin only widens what a key reaches")
        return value

    @field_validator("allowed_ips")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        return [str(ipaddress.ip_network(item, strict=False)) for item in value]

    @field_validator("expires_at")
    @classmethod
    def _future(cls, value: dt.datetime | None) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("give a time zone (e.g. 2027-01-01T00:00:00Z)")
        if value <= dt.datetime.now(dt.UTC):
            raise ValueError("must be in the future")
        return value


class ApiKeyOut(Output):
    id: uuid.UUID
    name: str
    prefix: str
    scopes: list[str]
    kind: str
    allowed_ips: list[str]
    expires_at: dt.datetime | None
    last_used_at: dt.datetime | None
    created_at: dt.datetime


class ApiKeyCreated(ApiKeyOut):
    """Returned once, at creation: ``key`` is never shown again."""

    key: str


class ApiKeyList(Output):
    data: list[ApiKeyOut]
