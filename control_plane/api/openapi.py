"""The OpenAPI 3.1 document, generated from the route table and its pydantic models."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from control_plane import __version__
from control_plane.api.routing import Access, Endpoint
from control_plane.security.authorization import SAFE_METHODS
from shared.errors import ErrorResponse

REF = "#/components/schemas/{model}"


def _parameters(endpoint: Endpoint, schemas: dict[str, Any]) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": (
                {"type": "string", "pattern": f"^{endpoint.path_ids[name].pattern.pattern}$"}
                if name in endpoint.path_ids
                else {"type": "string", "format": "uuid"}
            ),
        }
        for name in re.findall(r"\{(\w+)\}", endpoint.path)
    ]
    if endpoint.query is not None:
        schema = endpoint.query.model_json_schema(ref_template=REF)
        required = set(schema.get("required", []))
        for name, prop in schema.get("properties", {}).items():
            params.append(
                {"name": name, "in": "query", "required": name in required, "schema": prop}
            )
    return params


def _operation(endpoint: Endpoint, refs: dict[type[BaseModel], str]) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    ok = str(endpoint.status)
    if endpoint.response is not None:
        responses[ok] = {
            "description": "success",
            "content": {"application/json": {"schema": {"$ref": refs[endpoint.response]}}},
        }
    else:
        responses[ok] = {"description": "success"}
    error = {"content": {"application/json": {"schema": {"$ref": refs[ErrorResponse]}}}}
    if endpoint.api == "native":
        responses["400"] = {"description": "invalid input, with field details", **error}
    else:
        # Pterodactyl's shape: {"errors": [{"code", "status", "detail", "meta"}]}.
        responses["422"] = {"description": "invalid input, one error per field"}
    if endpoint.access is not Access.PUBLIC:
        responses["401"] = {"description": "not signed in", **error}
        responses["403"] = {"description": "forbidden, or a missing CSRF token", **error}
    if "{" in endpoint.path:
        responses["404"] = {"description": "not found, or not yours", **error}
    if endpoint.raw_body is not None:
        responses["413"] = {"description": "the body is too large", **error}
    if endpoint.rate_limit:
        responses["429"] = {"description": "rate limited (see Retry-After)", **error}
    operation: dict[str, Any] = {
        # Handlers of the Pterodactyl-compatible API share our handlers' names.
        "operationId": endpoint.name
        if endpoint.api == "native"
        else f"pterodactyl_{endpoint.api}_{endpoint.name}",
        "summary": endpoint.summary,
        "tags": list(endpoint.tags),
        "responses": responses,
        "x-access": endpoint.access.value,
    }
    if endpoint.permission:
        operation["x-permission"] = endpoint.permission
    if endpoint.access is not Access.PUBLIC:
        need = endpoint.requirement
        operation["x-scope"] = need.scope.value
        safe = endpoint.method in SAFE_METHODS
        session: dict[str, list[str]] = {"session": []} if safe else {"session": [], "csrf": []}
        if need.session_only:
            operation["security"] = [session]
        else:
            roles = [need.scope.value] + (["admin"] if need.admin else [])
            operation["security"] = [session, {"apiKey": roles}]
    if endpoint.body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": refs[endpoint.body]}}},
        }
    elif endpoint.raw_body is not None:
        raw = endpoint.raw_body
        operation["requestBody"] = {
            "required": True,
            "description": raw.describe(),
            "content": {raw.media_type: {"schema": {"type": "string", "format": "binary"}}},
        }
    return operation


def openapi_document(endpoints: list[Endpoint], *, server_url: str | None) -> dict[str, Any]:
    models: set[type[BaseModel]] = {ErrorResponse}
    for endpoint in endpoints:
        models.update(m for m in (endpoint.body, endpoint.response) if m is not None)
    ordered = sorted(models, key=lambda m: m.__name__)
    keys, definitions = models_json_schema([(m, "validation") for m in ordered], ref_template=REF)
    refs = {model: keys[(model, "validation")]["$ref"] for model in ordered}
    paths: dict[str, dict[str, Any]] = {}
    schemas = definitions.get("$defs", {})
    for endpoint in endpoints:
        item = paths.setdefault(endpoint.path, {})
        operation = _operation(endpoint, refs)
        parameters = _parameters(endpoint, schemas)
        if parameters:
            operation["parameters"] = parameters
        item[endpoint.method.lower()] = operation
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "StellarStack control plane", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "session": {"type": "apiKey", "in": "cookie", "name": "stellar_session"},
                "csrf": {"type": "apiKey", "in": "header", "name": "X-CSRF-Token"},
                "apiKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": (
                        "stl_<prefix>_<secret>. An operation lists the scopes its key needs: "
                        "read (look), write (act; includes read), admin (with read or write: "
                        "administration and other users' servers). Without admin, an "
                        "administrator's key is an ordinary user's key. Account security "
                        "(keys, second factors, passkeys, linked accounts) takes a session."
                    ),
                },
            },
        },
    }
    if server_url:
        document["servers"] = [{"url": server_url}]
    return document


routes = web.RouteTableDef()


@routes.get("/api/v1/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    from control_plane.api.registry import api_endpoints
    from control_plane.keys import SETTINGS

    return web.json_response(
        openapi_document(api_endpoints(), server_url=request.app[SETTINGS].public_url)
    )
