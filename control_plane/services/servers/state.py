"""A server's state, changed in one place so that every change is published.

Whoever learns a server's new state (the node's event stream, a power action's or a
reinstall's answer) sets it here: a real change is handed to the domain-event subscribers
as ``server.state`` in the same transaction (webhooks, alerts act on it).
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.models import Server
from control_plane.services import domain_events


async def change_state(db: AsyncSession, server: Server, state: str) -> None:
    """Set ``server.state``; publish ``server.state`` (``state``, ``previous``) if it changed."""
    previous, server.state = server.state, state
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
