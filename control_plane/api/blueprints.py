"""Administration of blueprints."""

from __future__ import annotations

from typing import Any

from control_plane.api.routing import Access, ApiRequest, ApiRoutes
from control_plane.schemas.blueprints import (
    BlueprintCreate,
    BlueprintList,
    BlueprintOut,
    BlueprintUpdate,
)
from control_plane.services import blueprints as service

routes = ApiRoutes("blueprints", access=Access.ADMIN)


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
