"""A server's state, changed in one place so that every change is published.

Whoever learns a server's new state (the node's event stream, a power action's or a
reinstall's answer) sets it here: a real change is handed to the domain-event subscribers
as ``server.state`` in the same transaction (webhooks, alerts act on it).
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.models import Server
from control_plane.services import domain_events


async def change_state(db: AsyncSession, server: Server, state: str) -> None:
    """Set ``server.state``; publish ``server.state`` (``state``, ``previous``) if it changed.

    ``previous`` is the state as committed now, read under the row's lock (FOR NO KEY UPDATE,
    the lock the update takes anyway): a power route recording the node's answer and the
    node's event stream recording the same change at once no longer both announce it, the
    second naming a state the first had already replaced."""
    current = await db.scalar(
        select(Server.state).where(Server.id == server.id).with_for_update(key_share=True)
    )
    previous = server.state if current is None else current
    server.state = state
    if previous == state:
        return
    await domain_events.publish(
        db,
        domain_events.DomainEvent(
            domain_events.SERVER_STATE,
            target_type="server",
            target_id=str(server.id),
            details={"state": state, "previous": previous},
        ),
    )
