"""Webhooks (docs/webhooks.md) at three levels, with the same operations each:

    /api/v1/webhooks[/{account_webhook_id}]                 my account (any user)
    /api/v1/servers/{server_id}/webhooks[/{webhook_id}]     one server (webhooks.* nodes)
    /api/v1/panel/webhooks[/{panel_webhook_id}]             every event (administrators)

    GET    <collection>                  list
    POST   <collection>                  create -> 201, with the signing secret (shown once)
    GET    <item>                        one
    PATCH  <item>                        change; enabled=true turns a disabled one back on
    DELETE <item>                        remove (its delivery log goes with it)
    POST   <item>/test                   queue a webhook.test delivery -> 202
    GET    <item>/deliveries             the delivery log, newest first
    POST   <item>/secret                 a new signing secret (shown once)

A URL is checked against the SSRF policy when saved (and again at every attempt). On a
server, subscribing to ``audit`` or ``server.power`` also needs ``activity.read``: they show
the same entries.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from yarl import URL

from control_plane.api.routing import Access, ApiRequest, ApiRoutes, Handler
from control_plane.errors import NotFound
from control_plane.keys import SECRET_BOX, WEBHOOK_GUARD
from control_plane.schemas.common import Page, PageMeta
from control_plane.schemas.webhooks import (
    DeliveryOut,
    DeliveryQuery,
    WebhookCreate,
    WebhookCreated,
    WebhookList,
    WebhookOut,
    WebhookSecretOut,
    WebhookUpdate,
)
from control_plane.services.webhooks import manage
from control_plane.services.webhooks.catalogue import ACTIVITY_EVENTS
from control_plane.services.webhooks.manage import Owner

routes = ApiRoutes("webhooks")


@dataclass(frozen=True)
class _Level:
    """One of the three places webhooks live."""

    name: str
    collection: str
    id_param: str
    access: Access
    owner: Callable[[ApiRequest[Any, Any]], Owner]
    # Server webhooks: the permission node of each kind of operation.
    permissions: dict[str, str] | None = None

    def permission(self, kind: str) -> str | None:
        return self.permissions[kind] if self.permissions else None

    @property
    def item(self) -> str:
        return f"{self.collection}/{{{self.id_param}}}"


LEVELS = (
    _Level(
        "account",
        "/api/v1/webhooks",
        "account_webhook_id",
        Access.USER,
        lambda req: Owner("account", user_id=req.me.user_id),
    ),
    _Level(
        "server",
        "/api/v1/servers/{server_id}/webhooks",
        "webhook_id",
        Access.USER,
        lambda req: Owner("server", server_id=req.server.id),
        {
            "read": "webhooks.read",
            "create": "webhooks.create",
            "update": "webhooks.update",
            "delete": "webhooks.delete",
        },
    ),
    _Level(
        "panel",
        "/api/v1/panel/webhooks",
        "panel_webhook_id",
        Access.ADMIN,
        lambda req: Owner("panel"),
    ),
)


def _named(name: str, handler: Handler) -> Handler:
    handler.__name__ = handler.__qualname__ = name
    return handler


def _audit_needs_activity(
    level: _Level, req: ApiRequest[Any, Any], events: list[str] | None
) -> None:
    # The server's activity log is behind activity.read; an audit webhook would show it too,
    # and so would power events (each is the log's entry: who, from which address).
    if level.name == "server" and events and ACTIVITY_EVENTS & set(events):
        req.require("activity.read")


async def _found(level: _Level, req: ApiRequest[Any, Any]) -> Any:
    webhook_id = req.uuid_param(level.id_param)
    try:
        return await manage.get_webhook(req.db, level.owner(req), webhook_id)
    except NotFound as err:
        raise req.deny(err, target="webhook", webhook=str(webhook_id)) from err


def _details(hook: Any) -> dict[str, Any]:
    # Only where the URL points: a Discord or Slack URL's path is its credential, and the
    # audit trail goes to administrators and to every audit webhook.
    where = str(URL(hook.url).origin())
    return {"scope": hook.scope, "name": hook.name, "url": where, "events": list(hook.events)}


def _shown(level: _Level, req: ApiRequest[Any, Any], hook: Any) -> WebhookOut:
    """A webhook as the caller may see it: a server's, to a sub-user who may see but not change
    it, without the path and query of its URL (they often hold the secret that lets anyone
    post to it, as Discord's and Slack's do); its origin says where it goes."""
    out = WebhookOut.model_validate(hook)
    may_change = level.permission("update")
    if may_change is None or req.access.allows(may_change):
        return out
    return out.model_copy(update={"url": f"{URL(out.url).origin()}/…"})


def _declare(level: _Level) -> None:
    access, where = level.access, level.name

    async def list_hooks(req: ApiRequest[Any, Any]) -> WebhookList:
        hooks = await manage.list_webhooks(req.db, level.owner(req))
        return WebhookList(data=[_shown(level, req, h) for h in hooks])

    async def create_hook(req: ApiRequest[WebhookCreate, Any]) -> WebhookCreated:
        _audit_needs_activity(level, req, list(req.body.events))
        await req.http.app[WEBHOOK_GUARD].check(req.body.url)
        async with req.transaction() as db:
            hook, secret = await manage.create_webhook(
                db,
                req.http.app[SECRET_BOX],
                level.owner(req),
                req.me.user_id,
                req.body.model_dump(),
                chosen_with_key=req.me.api_key_id,
            )
            await req.audit(
                "webhook.created",
                target_type="webhook",
                target_id=str(hook.id),
                details=_details(hook),
            )
        return WebhookCreated.model_validate(
            {**WebhookOut.model_validate(hook).model_dump(), "secret": secret}
        )

    async def get_hook(req: ApiRequest[Any, Any]) -> WebhookOut:
        return _shown(level, req, await _found(level, req))

    async def update_hook(req: ApiRequest[WebhookUpdate, Any]) -> WebhookOut:
        changes = req.body.model_dump(exclude_none=True)
        _audit_needs_activity(level, req, changes.get("events"))
        if "url" in changes:
            await req.http.app[WEBHOOK_GUARD].check(changes["url"])
        async with req.transaction() as db:
            hook = await _found(level, req)
            if "url" in changes:
                # Sending an audit webhook somewhere else shows the activity there too.
                _audit_needs_activity(level, req, changes.get("events", list(hook.events)))
                # Whoever chooses where it sends is whom it sends for (outbox.py).
                hook.created_by = req.me.user_id
                hook.chosen_with_key = req.me.api_key_id
            manage.apply_changes(hook, changes)
            await db.flush()
            await req.audit(
                "webhook.updated",
                target_type="webhook",
                target_id=str(hook.id),
                details={"changed": sorted(changes), **_details(hook)},
            )
            return WebhookOut.model_validate(hook)

    async def delete_hook(req: ApiRequest[Any, Any]) -> None:
        hook = await _found(level, req)
        await req.db.delete(hook)
        await req.audit(
            "webhook.deleted", target_type="webhook", target_id=str(hook.id), details=_details(hook)
        )

    async def test_hook(req: ApiRequest[Any, Any]) -> DeliveryOut:
        delivery = await manage.send_test(req.db, await _found(level, req))
        return DeliveryOut.model_validate(delivery)

    async def hook_deliveries(req: ApiRequest[Any, DeliveryQuery]) -> Page[DeliveryOut]:
        rows, total = await manage.deliveries_of(
            req.db,
            await _found(level, req),
            status=req.query.status,
            offset=req.query.offset,
            limit=req.query.per_page,
        )
        return Page[DeliveryOut](
            data=[DeliveryOut.model_validate(r) for r in rows],
            meta=PageMeta(page=req.query.page, per_page=req.query.per_page, total=total),
        )

    async def rotate_hook_secret(req: ApiRequest[Any, Any]) -> WebhookSecretOut:
        hook = await _found(level, req)
        secret = manage.rotate_secret(req.http.app[SECRET_BOX], hook)
        await req.audit("webhook.secret.rotated", target_type="webhook", target_id=str(hook.id))
        return WebhookSecretOut(secret=secret)

    common: dict[str, Any] = {"access": access}
    routes.get(
        level.collection,
        summary=f"List the {where} webhooks",
        permission=level.permission("read"),
        response=WebhookList,
        **common,
    )(_named(f"list_{where}_webhooks", list_hooks))
    routes.post(
        level.collection,
        summary=f"Create a {where} webhook (its signing secret is shown once)",
        permission=level.permission("create"),
        body=WebhookCreate,
        response=WebhookCreated,
        status=201,
        transactional=False,
        rate_limit="files",
        **common,
    )(_named(f"create_{where}_webhook", create_hook))
    routes.get(
        level.item,
        summary=f"One {where} webhook",
        permission=level.permission("read"),
        response=WebhookOut,
        **common,
    )(_named(f"get_{where}_webhook", get_hook))
    routes.patch(
        level.item,
        summary=f"Change a {where} webhook (enabled=true turns it back on)",
        permission=level.permission("update"),
        body=WebhookUpdate,
        response=WebhookOut,
        transactional=False,
        rate_limit="files",
        **common,
    )(_named(f"update_{where}_webhook", update_hook))
    routes.delete(
        level.item,
        summary=f"Remove a {where} webhook",
        permission=level.permission("delete"),
        status=204,
        **common,
    )(_named(f"delete_{where}_webhook", delete_hook))
    routes.post(
        level.item + "/test",
        summary=f"Send a test event to a {where} webhook (queued; see its deliveries)",
        permission=level.permission("update"),
        response=DeliveryOut,
        status=202,
        rate_limit="files",
        **common,
    )(_named(f"test_{where}_webhook", test_hook))
    routes.get(
        level.item + "/deliveries",
        summary=f"The delivery log of a {where} webhook, newest first",
        permission=level.permission("read"),
        query=DeliveryQuery,
        response=Page[DeliveryOut],
        **common,
    )(_named(f"{where}_webhook_deliveries", hook_deliveries))
    routes.post(
        level.item + "/secret",
        summary=f"A new signing secret for a {where} webhook (shown once)",
        permission=level.permission("update"),
        response=WebhookSecretOut,
        **common,
    )(_named(f"rotate_{where}_webhook_secret", rotate_hook_secret))


for _level in LEVELS:
    _declare(_level)
