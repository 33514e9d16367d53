"""Pterodactyl's envelope: ``{object, attributes}``, lists with pagination meta and links,
``?page``/``?per_page``, ``?include=`` (relationships under ``attributes.relationships``)."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlencode

from pydantic import ConfigDict, Field

from control_plane.api.list_cache import json_bytes
from control_plane.api.routing import ApiRequest, JsonBytes
from control_plane.schemas.common import Input, Output

MEDIA_TYPE = "Application/vnd.pterodactyl.v1+json"


class CompatQuery(Input):
    """What every list and item route takes: paging and ``include``. Frozen: its parse is
    kept per query text (``api.routing``)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)

    page: int = Field(1, ge=1, le=100_000)
    per_page: int = Field(50, ge=1, le=100)
    include: str = Field("", max_length=200)

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.per_page

    def includes(self, *allowed: str) -> frozenset[str]:
        """The requested relationships this route knows (others are ignored, as Pterodactyl
        ignores includes it does not offer)."""
        asked = {name.strip() for name in self.include.split(",") if name.strip()}
        return frozenset(asked & set(allowed))


class CompatObject(Output):
    """``{object, attributes}`` (the OpenAPI document's view of every answer)."""

    object: str
    attributes: dict[str, Any] | None = None
    data: list[dict[str, Any]] | None = None
    meta: dict[str, Any] | None = None


def timestamp(value: dt.datetime | None) -> str | None:
    """Pterodactyl's timestamps: ISO 8601 with an offset, to the second."""
    return None if value is None else value.astimezone(dt.UTC).isoformat(timespec="seconds")


def item(kind: str, attributes: dict[str, Any], **relationships: Any) -> dict[str, Any]:
    """One object; relationships (already enveloped) sit under ``attributes.relationships``."""
    if relationships:
        attributes = {**attributes, "relationships": relationships}
    return {"object": kind, "attributes": attributes}


def collection(kind: str, rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """A relationship or a list without paging: ``{object: "list", data: [...]}``."""
    return {"object": "list", "data": [item(kind, attributes) for attributes in rows]}


def page(req: ApiRequest[Any, Any], data: list[dict[str, Any]], total: int) -> dict[str, Any]:
    """A page of enveloped objects with Pterodactyl's pagination meta and links (the
    route's query is a :class:`CompatQuery`)."""
    return {"object": "list", "data": data, "meta": _meta(req, len(data), total)}


def page_bytes(req: ApiRequest[Any, Any], entries: bytes, count: int, total: int) -> JsonBytes:
    """:func:`page` around ``count`` objects already written as a JSON array (a kept list)."""
    meta = json_bytes(_meta(req, count, total))
    # One copy of the kept entries (each "+" would copy them again).
    return JsonBytes(b"".join((b'{"object":"list","data":', entries, b',"meta":', meta, b"}")))


def _meta(req: ApiRequest[Any, Any], count: int, total: int) -> dict[str, Any]:
    query: CompatQuery = req.query
    pages = max(1, math.ceil(total / query.per_page))
    links: dict[str, str] = {}
    if query.page < pages:
        links["next"] = _link(req, query.page + 1)
    if query.page > 1:
        links["previous"] = _link(req, min(query.page - 1, pages))
    return {
        "pagination": {
            "total": total,
            "count": count,
            "per_page": query.per_page,
            "current_page": query.page,
            "total_pages": pages,
            "links": links,
        }
    }


def _link(req: ApiRequest[Any, Any], number: int) -> str:
    params = {k: v for k, v in req.http.query.items() if k != "page"}
    params["page"] = str(number)
    return f"{req.http.url.origin()}{req.http.path}?{urlencode(params)}"
