"""The OpenAPI document covers every route, generated from the same models that validate."""

from __future__ import annotations

from openapi_spec_validator import validate

from control_plane.api.registry import api_endpoints as endpoints
from control_plane.api.routing import Access
from tests.support.panel import Panel

SAFE = frozenset({"GET", "HEAD", "OPTIONS"})


async def test_openapi_covers_every_route_with_its_models(panel: Panel) -> None:
    browser = await panel.browser()
    document = await browser.json("GET", "/api/v1/openapi.json")
    assert document["openapi"] == "3.1.0"
    validate(document)
    for endpoint in endpoints():
        operation = document["paths"][endpoint.path][endpoint.method.lower()]
        assert operation["summary"] == endpoint.summary
        if endpoint.body is not None:
            ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            name = ref.rsplit("/", 1)[1]
            schema = document["components"]["schemas"][name]
            assert schema.get("additionalProperties") is False, f"{name} accepts unknown fields"
    login = document["components"]["schemas"]["LoginIn"]
    assert set(login["required"]) == {"email", "password"}
    assert "ErrorResponse" in document["components"]["schemas"]


async def test_openapi_says_which_key_scopes_each_operation_needs(panel: Panel) -> None:
    browser = await panel.browser()
    document = await browser.json("GET", "/api/v1/openapi.json")
    assert (
        "write (act; includes read)"
        in (document["components"]["securitySchemes"]["apiKey"]["description"])
    )
    for endpoint in endpoints():
        operation = document["paths"][endpoint.path][endpoint.method.lower()]
        label = f"{endpoint.method} {endpoint.path}"
        if endpoint.access is Access.PUBLIC:
            assert "security" not in operation, label
            continue
        keys = [s["apiKey"] for s in operation["security"] if "apiKey" in s]
        if endpoint.path.startswith("/api/v1/account/") and endpoint.method not in SAFE:
            assert keys == [], f"{label}: account security takes a browser session"
            continue
        if endpoint.session_only:  # the same on Pterodactyl's account paths
            assert endpoint.path.startswith("/api/client/account/"), label
            assert keys == [], f"{label}: account security takes a browser session"
            continue
        if endpoint.scope is not None:
            assert keys == [[endpoint.scope.value]], label  # /metrics: its own scope alone
            continue
        scope = "read" if endpoint.method in SAFE else "write"
        admin = ["admin"] if endpoint.access is Access.ADMIN else []
        assert keys == [[scope, *admin]], label
        assert operation["x-scope"] == scope, label


async def test_file_writes_document_their_raw_bodies_and_limits(panel: Panel) -> None:
    browser = await panel.browser()
    document = await browser.json("GET", "/api/v1/openapi.json")
    validate(document)
    files = "/api/v1/servers/{server_id}/files/"
    expected = {
        files + "contents": ({"path"}, "At most 1048576 bytes"),
        files + "upload": ({"path", "size", "overwrite"}, "max_upload_bytes"),
    }
    for path, (query, limit) in expected.items():
        operation = document["paths"][path]["put"]
        body = operation["requestBody"]
        assert body["content"] == {
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
        }, path
        assert limit in body["description"], path
        assert "413" in operation["responses"], path
        assert {p["name"] for p in operation["parameters"] if p["in"] == "query"} == query
    # Raw bodies are the exception: a JSON body is still declared as one.
    directory = document["paths"][files + "directory"]["post"]["requestBody"]
    assert list(directory["content"]) == ["application/json"]
