"""A user's API keys. Managed from a browser session only: a key cannot mint more keys."""

from __future__ import annotations

from typing import Any

from control_plane.api.routing import ApiRequest, ApiRoutes
from control_plane.db.models import ApiKey
from control_plane.errors import Forbidden, NotFound
from control_plane.schemas.api_keys import ApiKeyCreate, ApiKeyCreated, ApiKeyList, ApiKeyOut
from control_plane.security.api_keys import Scope, new_key
from control_plane.services import api_keys as api_key_service

routes = ApiRoutes("api keys")


@routes.get("/api/v1/account/api-keys", summary="List my API keys", response=ApiKeyList)
async def list_keys(req: ApiRequest[Any, Any]) -> ApiKeyList:
    rows = await api_key_service.keys_of(req.db, req.me.user_id)
    return ApiKeyList(data=[ApiKeyOut.model_validate(k) for k in rows])


@routes.post(
    "/api/v1/account/api-keys",
    summary="Create an API key (shown once)",
    body=ApiKeyCreate,
    response=ApiKeyCreated,
    status=201,
)
async def create_key(req: ApiRequest[ApiKeyCreate, Any]) -> ApiKeyCreated:
    scopes = sorted(set(req.body.scopes))
    for scope in (Scope.ADMIN, Scope.METRICS):
        if scope in scopes and not req.me.is_admin:
            raise req.deny(
                Forbidden(f"only administrators can create keys with the {scope.value} scope")
            )
    full, prefix, secret_hash = new_key(req.body.kind)
    key = ApiKey(
        user_id=req.me.user_id,
        name=req.body.name,
        prefix=prefix,
        secret_hash=secret_hash,
        scopes=[s.value for s in scopes],
        allowed_ips=req.body.allowed_ips,
        expires_at=req.body.expires_at,
        kind=req.body.kind,
    )
    req.db.add(key)
    await req.db.flush()
    await req.audit(
        "api_key.created",
        target_type="api_key",
        target_id=str(key.id),
        details={
            "name": key.name,
            "kind": key.kind,
            "scopes": key.scopes,
            "allowed_ips": key.allowed_ips,
        },
    )
    return ApiKeyCreated(**ApiKeyOut.model_validate(key).model_dump(), key=full)


@routes.delete("/api/v1/account/api-keys/{key_id}", summary="Revoke one of my API keys", status=204)
async def revoke_key(req: ApiRequest[Any, Any]) -> None:
    key = await api_key_service.key_of(req.db, req.me.user_id, req.uuid_param("key_id"))
    if key is None or not await api_key_service.revoke(req.db, key):
        raise req.deny(NotFound("no such API key"), target="api_key")
    await req.audit("api_key.revoked", target_type="api_key", target_id=str(key.id))
