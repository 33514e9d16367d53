"""Clients of the Pterodactyl-compatible API: ``ptla_``/``ptlc_`` keys made through our own
key route, and the compat error envelope read like ours."""

from __future__ import annotations

from typing import Any

from tests.support.panel import Browser, Panel

MEDIA_TYPE = "Application/vnd.pterodactyl.v1+json"


async def pterodactyl_key(
    panel: Panel, owner: Browser, kind: str, scopes: list[str] | None = None
) -> Browser:
    """A client holding a new key of ``kind`` (application or client) made by ``owner``."""
    if scopes is None:
        scopes = ["read", "write", "admin"] if kind == "application" else ["read", "write"]
    created = await owner.json(
        "POST",
        "/api/v1/account/api-keys",
        status=201,
        json={"name": f"{kind} key", "scopes": scopes, "kind": kind},
    )
    client = await panel.browser()
    client.api_key = created["key"]
    return client


def error_of(body: Any) -> dict[str, str]:
    """``{"code", "message"}`` of an error in either envelope (ours or Pterodactyl's)."""
    if isinstance(body, dict) and "errors" in body:
        first = body["errors"][0]
        return {"code": first["code"], "message": first["detail"], "status": first["status"]}
    if isinstance(body, dict) and "error" in body:
        return {"code": body["error"]["code"], "message": body["error"]["message"]}
    return {"code": "", "message": ""}
