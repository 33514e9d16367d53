"""Queue a mail in the caller's transaction; the background sender delivers it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.models import OutboxMail
from control_plane.mail.templates import render

# The key in a database session's ``info`` under which the app puts its MailContext.
MAIL_CONTEXT: Final = "stellar.mail"


@dataclass(frozen=True)
class MailContext:
    """What code with only a database session (domain event subscribers) needs to mail."""

    base_url: str


def mail_context(db: AsyncSession) -> MailContext | None:
    """The app's mail context, or None when no mail is sent (no SMTP, or a session the app
    did not make)."""
    context = db.info.get(MAIL_CONTEXT)
    return context if isinstance(context, MailContext) else None


async def queue(
    db: AsyncSession, *, kind: str, to: str, context: dict[str, Any], base_url: str
) -> OutboxMail:
    """Render ``kind`` for ``to`` and add it to the outbox (committed with the action)."""
    mail = render(kind, context, base_url=base_url)
    row = OutboxMail(
        kind=kind,
        to_address=to,
        subject=mail.subject,
        text_body=mail.text,
        html_body=mail.html,
    )
    db.add(row)
    await db.flush()
    return row
