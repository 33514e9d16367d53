"""Administration of blueprints."""

from __future__ import annotations

import asyncio
import re
from typing import Any, Final

import orjson
from aiohttp import web

from control_plane.api.egg_bodies import MAX_IMPORT_BODY_BYTES, egg_file
from control_plane.api.routing import Access, ApiRequest, ApiRoutes, RawBody
from control_plane.errors import InvalidRequest
from control_plane.schemas.blueprints import (
    BlueprintCreate,
    BlueprintList,
    BlueprintOut,
    BlueprintUpdate,
)
from control_plane.schemas.eggs import (
    EggExportQuery,
    EggImportOut,
    EggImportQuery,
    EggImportResult,
    EggReportItem,
)
from control_plane.services import blueprints as service
from control_plane.services.eggs import exporting, importing, reading
from control_plane.services.eggs.mapping import MappedEgg

routes = ApiRoutes("blueprints", access=Access.ADMIN)
_SAFE_NAME: Final = re.compile(r"[^a-z0-9]+")


@routes.get("/api/v1/blueprints", summary="List blueprints", response=BlueprintList)
async def list_blueprints(req: ApiRequest[Any, Any]) -> BlueprintList:
    rows = await service.list_blueprints(req.db)
    return BlueprintList(data=[BlueprintOut.model_validate(r) for r in rows])


@routes.post(
    "/api/v1/blueprints",
    summary="Create a blueprint",
    body=BlueprintCreate,
    response=BlueprintOut,
    status=201,
)
async def create_blueprint(req: ApiRequest[BlueprintCreate, Any]) -> BlueprintOut:
    blueprint = await service.save_blueprint(req.db, req.body)
    await req.audit("blueprint.created", target_type="blueprint", target_id=str(blueprint.id))
    return BlueprintOut.model_validate(blueprint)


@routes.get(
    "/api/v1/blueprints/{blueprint_id}",
    summary="Get a blueprint",
    response=BlueprintOut,
)
async def get_blueprint(req: ApiRequest[Any, Any]) -> BlueprintOut:
    return BlueprintOut.model_validate(
        await service.get_blueprint(req.db, req.uuid_param("blueprint_id"))
    )


@routes.put(
    "/api/v1/blueprints/{blueprint_id}",
    summary="Replace a blueprint",
    body=BlueprintUpdate,
    response=BlueprintOut,
)
async def replace_blueprint(req: ApiRequest[BlueprintUpdate, Any]) -> BlueprintOut:
    blueprint = await service.get_blueprint(req.db, req.uuid_param("blueprint_id"))
    await service.save_blueprint(req.db, req.body, blueprint)
    await req.audit("blueprint.updated", target_type="blueprint", target_id=str(blueprint.id))
    return BlueprintOut.model_validate(blueprint)


@routes.delete(
    "/api/v1/blueprints/{blueprint_id}",
    summary="Delete an unused blueprint",
    status=204,
)
async def delete_blueprint(req: ApiRequest[Any, Any]) -> None:
    blueprint = await service.delete_blueprint(req.db, req.uuid_param("blueprint_id"))
    await req.audit("blueprint.deleted", target_type="blueprint", target_id=str(blueprint.id))


@routes.post(
    "/api/v1/blueprints/import",
    summary="Import Pterodactyl or Pelican eggs as blueprints",
    query=EggImportQuery,
    response=EggImportOut,
    raw_body=RawBody(
        "One egg or a list of eggs (PTDL_v1, PTDL_v2, PLCN_v1 to PLCN_v3) as JSON "
        "(application/json), YAML (application/yaml or text/yaml; no anchors or aliases), "
        "or a multipart/form-data upload of the file in a part named `file`. Each egg "
        "updates the blueprint imported from the same egg uuid (or, without one, of the "
        "same name), else creates one. If any egg is refused, nothing is imported: 400 "
        "with every refused egg's report in `details` (`loc`: eggs, index, part).",
        media_type="application/json",
        max_bytes=MAX_IMPORT_BODY_BYTES,
        limit="A body that stops arriving is refused with 408.",
    ),
    transactional=False,
)
async def import_eggs(req: ApiRequest[Any, EggImportQuery]) -> EggImportOut:
    raw, kind = await egg_file(req.http, wait_seconds=req.settings.body_timeout_seconds)
    accept = req.query.accept_unknown_rules

    def read_and_map() -> list[MappedEgg]:
        return importing.map_eggs(reading.read_eggs(raw, kind), accept_unknown_rules=accept)

    # Parsing YAML, checking patterns and validating are CPU work: off the event loop.
    try:
        mapped = await asyncio.to_thread(read_and_map)
    except InvalidRequest as err:
        req.audit_failure("blueprint.import_refused", details={"reason": err.message[:200]})
        raise
    async with req.transaction():
        imported = await importing.save_eggs(req.db, mapped)
        for result in imported:
            await req.audit(
                "blueprint.imported",
                target_type="blueprint",
                target_id=str(result.blueprint.id),
                details={
                    "egg_uuid": result.blueprint.egg_uuid,
                    "version": result.version,
                    "created": result.created,
                    "refused": sum(i.outcome == "refused" for i in result.report),
                    "changed": sum(i.outcome == "changed" for i in result.report),
                },
            )
        return EggImportOut(
            data=[
                EggImportResult(
                    blueprint=BlueprintOut.model_validate(result.blueprint),
                    created=result.created,
                    version=result.version,
                    report=[EggReportItem.model_validate(item) for item in result.report],
                )
                for result in imported
            ]
        )


@routes.get(
    "/api/v1/blueprints/{blueprint_id}/export",
    summary="Export a blueprint as an egg (PTDL_v2 or PLCN_v3)",
    query=EggExportQuery,
)
async def export_egg(req: ApiRequest[Any, EggExportQuery]) -> web.Response:
    blueprint = await service.get_blueprint(req.db, req.uuid_param("blueprint_id"))
    egg = exporting.export_blueprint(blueprint, req.query.format)
    filename = f"egg-{_SAFE_NAME.sub('-', blueprint.name.lower()).strip('-') or 'blueprint'}.json"
    return web.Response(
        body=orjson.dumps(egg, option=orjson.OPT_INDENT_2),
        content_type="application/json",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
