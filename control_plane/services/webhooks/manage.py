"""Webhooks of an account, a server or the panel: listed, made, changed, removed.

Every function takes the :class:`Owner` the caller acts for; a webhook of another owner is
simply not found. URLs are checked by the route (guard.py) before the transaction opens,
since that needs DNS.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, ClassVar, Final, Literal

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.models import Webhook, WebhookDelivery
from control_plane.errors import ApiError, Conflict, NotFound
from control_plane.security.encryption import EncryptionNotConfigured, SecretBox
from control_plane.services.webhooks.outbox import test_delivery
from control_plane.services.webhooks.signing import new_secret

MAX_PER_OWNER: Final = 20


class WebhooksUnavailable(ApiError):
    """Secrets cannot be stored: no encryption key is configured."""

    status: ClassVar[int] = 503
    code: ClassVar[str] = "webhooks_unavailable"


@dataclass(frozen=True)
class Owner:
    """Whose webhooks: an account's, a server's or the panel's."""

    scope: Literal["account", "server", "panel"]
    user_id: uuid.UUID | None = None
    server_id: uuid.UUID | None = None

    def owns(self) -> list[ColumnElement[bool]]:
        conditions = [Webhook.scope == self.scope]
        if self.scope == "account":
            conditions.append(Webhook.user_id == self.user_id)
        elif self.scope == "server":
            conditions.append(Webhook.server_id == self.server_id)
        return conditions


async def list_webhooks(db: AsyncSession, owner: Owner) -> list[Webhook]:
    return list(await db.scalars(select(Webhook).where(*owner.owns()).order_by(Webhook.created_at)))


async def get_webhook(db: AsyncSession, owner: Owner, webhook_id: uuid.UUID) -> Webhook:
    hook = await db.scalar(select(Webhook).where(Webhook.id == webhook_id, *owner.owns()))
    if hook is None:
        raise NotFound("no such webhook")
    return hook


def _seal(box: SecretBox, hook: Webhook) -> str:
    secret = new_secret()
    try:
        box.seal(hook, "secret", secret)
    except EncryptionNotConfigured as err:
        raise WebhooksUnavailable(
            "webhooks need encryption keys on the control plane (STELLAR_ENCRYPTION_KEYS): "
            "their signing secrets are stored encrypted"
        ) from err
    return secret


async def create_webhook(
    db: AsyncSession,
    box: SecretBox,
    owner: Owner,
    created_by: uuid.UUID,
    fields: dict[str, Any],
    *,
    chosen_with_key: uuid.UUID | None = None,
) -> tuple[Webhook, str]:
    """A new webhook and its signing secret (returned this once, stored encrypted);
    ``chosen_with_key``: the API key its creator used, if any (outbox.py)."""
    count = await db.scalar(select(func.count()).select_from(Webhook).where(*owner.owns())) or 0
    if count >= MAX_PER_OWNER:
        raise Conflict(f"at most {MAX_PER_OWNER} webhooks here: remove one first")
    hook = Webhook(
        id=uuid.uuid4(),
        scope=owner.scope,
        user_id=owner.user_id,
        server_id=owner.server_id,
        created_by=created_by,
        chosen_with_key=chosen_with_key,
        secret="",
        **fields,
    )
    secret = _seal(box, hook)
    db.add(hook)
    await db.flush()
    return hook, secret


def apply_changes(hook: Webhook, changes: dict[str, Any]) -> None:
    """Change fields; turning a webhook back on clears why it was turned off."""
    for name, value in changes.items():
        setattr(hook, name, value)
    if changes.get("enabled"):
        hook.disabled_reason, hook.disabled_at = None, None


def rotate_secret(box: SecretBox, hook: Webhook) -> str:
    """A new signing secret for ``hook`` (the old one stops signing at once)."""
    return _seal(box, hook)


async def send_test(db: AsyncSession, hook: Webhook) -> WebhookDelivery:
    """Queue a ``webhook.test`` delivery; the dispatcher sends it within a poll interval."""
    if not hook.enabled:
        raise Conflict("the webhook is disabled: enable it first")
    delivery = test_delivery(hook)
    db.add(delivery)
    await db.flush()
    return delivery


async def deliveries_of(
    db: AsyncSession, hook: Webhook, *, status: str | None, offset: int, limit: int
) -> tuple[list[WebhookDelivery], int]:
    """One page of ``hook``'s delivery log, newest first, and the total."""
    query = select(WebhookDelivery).where(WebhookDelivery.webhook_id == hook.id)
    if status is not None:
        query = query.where(WebhookDelivery.status == status)
    total = await db.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = await db.scalars(
        query.order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id)
        .offset(offset)
        .limit(limit)
    )
    return list(rows), total
