"""The admin pages for blueprints, servers and the audit trail (issue 15, admin part 2).

Every route here is for administrators only (``Access.ADMIN`` on the table, decided by the
same :func:`~control_plane.security.authorization.refusal` as the API: anyone else gets the
403 page). The pages show; the browser code (``static/admin-catalog.js``) acts through the
JSON API: ``/api/v1/blueprints`` (and ``/import``), ``/api/v1/servers`` and its actions,
``/api/v1/audit/verify``.

- ``/admin/blueprints``           the list, an egg import (file picker or drag and drop) and
                                  its report;
- ``/admin/blueprints/new``       a blank blueprint form; ``/admin/blueprints/{id}`` edits one
                                  (and links its export);
- ``/admin/servers``              every server, searched and paged, with suspend, reinstall
                                  and delete; ``/admin/servers/new`` creates one for a user
                                  and shows its install;
- ``/admin/audit``                the trail filtered by actor, action, target and time, and
                                  the hash chain's state.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any, Final

from aiohttp import web
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy import func, select

from control_plane.api.audit import filtered
from control_plane.api.routing import Access, ApiRequest, ApiRoutes
from control_plane.db.models import AuditEntry
from control_plane.schemas.audit import AuditQuery
from control_plane.schemas.blueprints import BlueprintOut
from control_plane.services import blueprints as blueprint_service
from control_plane.web import admin_catalog_data as data
from control_plane.web.render import page

routes = ApiRoutes("pages", access=Access.ADMIN)
SERVERS_PER_PAGE: Final = 50
AUDIT_PER_PAGE: Final = 50
_NAME = Field("", max_length=254)


class ServerSearch(BaseModel):
    q: str = Field("", max_length=100)
    page: int = Field(1, ge=1, le=100_000)


class AuditFilter(BaseModel):
    """The audit page's form, as a browser sends it: empty fields are unset; ``actor`` is an
    e-mail address or a user id; times are UTC (``datetime-local`` inputs)."""

    actor: str = _NAME
    action: str = Field("", max_length=64)
    target_type: str = Field("", max_length=32)
    target_id: str = Field("", max_length=64)
    since: str = Field("", max_length=40)
    until: str = Field("", max_length=40)
    page: int = Field(1, ge=1, le=100_000)


def _pages(total: int, size: int) -> int:
    return max(1, -(-total // size))


@routes.get("/admin/blueprints", summary="Page: blueprints (admin)")
async def blueprints_page(req: ApiRequest[Any, Any]) -> web.StreamResponse:
    return page(
        req.http, "admin/catalog/blueprints.html", blueprints=await data.blueprint_rows(req.db)
    )


@routes.get("/admin/blueprints/new", summary="Page: a new blueprint (admin)")
async def new_blueprint_page(req: ApiRequest[Any, Any]) -> web.StreamResponse:
    return page(req.http, "admin/catalog/blueprint.html", blueprint=None, servers=0)


@routes.get("/admin/blueprints/{blueprint_id}", summary="Page: edit a blueprint (admin)")
async def blueprint_page(req: ApiRequest[Any, Any]) -> web.StreamResponse:
    blueprint_id = req.uuid_param("blueprint_id")
    blueprint = await blueprint_service.get_blueprint(req.db, blueprint_id)
    shown = BlueprintOut.model_validate(blueprint).model_dump(mode="json")
    return page(
        req.http,
        "admin/catalog/blueprint.html",
        blueprint=shown,
        servers=await data.servers_using(req.db, blueprint_id),
    )


@routes.get("/admin/servers", summary="Page: every server (admin)", query=ServerSearch)
async def servers_page(req: ApiRequest[Any, ServerSearch]) -> web.StreamResponse:
    query = req.query
    search = query.q.strip()
    found = await data.server_page(
        req.db, search, offset=(query.page - 1) * SERVERS_PER_PAGE, limit=SERVERS_PER_PAGE
    )
    return page(
        req.http,
        "admin/catalog/servers.html",
        servers=found.rows,
        total=found.total,
        q=search,
        page_number=query.page,
        pages=_pages(found.total, SERVERS_PER_PAGE),
    )


@routes.get("/admin/servers/new", summary="Page: create a server for a user (admin)")
async def new_server_page(req: ApiRequest[Any, Any]) -> web.StreamResponse:
    choices = await data.server_choices(req.db)
    low_high = {
        name: req.settings.limit(name) for name in ("memory_mib", "cpu_percent", "disk_mib")
    }
    return page(req.http, "admin/catalog/server_new.html", choices=choices, limits=low_high)


@routes.get("/admin/audit", summary="Page: the audit trail (admin)", query=AuditFilter)
async def audit_page(req: ApiRequest[Any, AuditFilter]) -> web.StreamResponse:
    form = req.query
    problems: dict[str, str] = {}
    query = await _audit_query(req, form, problems)
    entries: list[AuditEntry] = []
    total = 0
    if query is not None:
        statement = filtered(query)
        total = await req.db.scalar(select(func.count()).select_from(statement.subquery())) or 0
        entries = list(
            await req.db.scalars(
                statement.order_by(AuditEntry.id.desc()).offset(query.offset).limit(AUDIT_PER_PAGE)
            )
        )
    return page(
        req.http,
        "admin/catalog/audit.html",
        status=400 if problems else 200,
        form=form,
        problems=problems,
        entries=entries,
        total=total,
        page_number=form.page,
        pages=_pages(total, AUDIT_PER_PAGE),
        actions=await data.audit_actions(req.db),
        as_json=_as_json,
        filters=_filters_without_page(form),
    )


async def _audit_query(
    req: ApiRequest[Any, AuditFilter], form: AuditFilter, problems: dict[str, str]
) -> AuditQuery | None:
    """The API's query for the page's form, or None with ``problems`` by field."""
    fields: dict[str, Any] = {"page": form.page, "per_page": AUDIT_PER_PAGE}
    for name in ("action", "target_type", "target_id"):
        if value := getattr(form, name).strip():
            fields[name] = value
    actor = form.actor.strip()
    if actor:
        actor_id = await _actor_id(req, actor)
        if actor_id is None:
            problems["actor"] = "no user has this e-mail address or id"
        fields["actor_id"] = actor_id
    for name in ("since", "until"):
        text = getattr(form, name).strip()
        if not text:
            continue
        try:
            moment = dt.datetime.fromisoformat(text)
        except ValueError:
            problems[name] = "not a date and time (YYYY-MM-DDTHH:MM)"
            continue
        fields[name] = moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
    if problems:
        return None
    try:
        return AuditQuery.model_validate(fields)
    except ValidationError as err:
        for item in err.errors(include_input=False, include_url=False):
            problems[str(item["loc"][0]) if item["loc"] else "form"] = item["msg"]
        return None


async def _actor_id(req: ApiRequest[Any, Any], actor: str) -> uuid.UUID | None:
    if "@" in actor:
        return await data.user_id_of(req.db, actor)
    try:
        return uuid.UUID(actor)
    except ValueError:
        return None


def _as_json(value: Any) -> str:
    """Details as readable JSON text (the template escapes it like any text)."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def _filters_without_page(form: AuditFilter) -> dict[str, str]:
    """The form's filters, for the pager's links (which add their own page)."""
    return {
        name: value
        for name, value in form.model_dump(exclude={"page"}).items()
        if isinstance(value, str) and value
    }
