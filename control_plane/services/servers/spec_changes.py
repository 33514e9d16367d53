"""Sending a server's spec to its node while other requests (on this replica or another) may
change the same server: every route that sends a spec goes through here.

Each send first raises the server's ``spec_revision`` under the server row's lock (its
node's row locked first, the order every transaction takes them in), in a short transaction
of its own, and builds the spec from the row as it then is, numbered with that revision; the
node keeps the highest revision it was given (``ServerSpec.is_older_than``) and says which it
keeps: one numbered beyond the database's (restored from an older backup) is numbered above.
A change that is stored only once the node has it (:func:`send_then_store`) is stored only if
no other spec was numbered since its own; otherwise its spec may lack what that other request
changed, or the other's may lack this change, and it is built again from the row as it is now
and sent again. So, with two changes at once:

- neither is lost: the node ends with a spec made from both;
- a spec held up on the way (a slow network, a replica frozen while sending it) never replaces
  a newer one at the node;
- a start sends a fresh revision too, so a change sent but never stored (its request failed
  between the node and the database) is undone at the next start.

No transaction stays open while the node answers.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Final, TypeVar

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.models import Node, Server
from control_plane.errors import Conflict, NotFound
from control_plane.nodes.client import NodeClient
from control_plane.services.servers import placement, startup
from shared.server_spec import ServerSpec

log = structlog.get_logger("cp.specs")

T = TypeVar("T")
# A write transaction (``ApiRequest.transaction`` in a route, so that its audit goes in it).
Begin = Callable[[], AbstractAsyncContextManager[AsyncSession]]
# Builds the spec to send from the locked row (``startup.build_spec``, with the change to
# make); it may refuse the change (a 4xx), and nothing is written then.
Build = Callable[[AsyncSession, Server], Awaitable[ServerSpec]]
# Stores the change the node took, on the locked row; its result is the route's.
Store = Callable[[AsyncSession, Server], Awaitable[T]]

# Sends of one change before it gives up on a server others keep changing (409).
ATTEMPTS: Final = 3
CHANGED_MEANWHILE: Final = (
    "the server was changed by other requests while this change was made: try again"
)


async def locked_server(db: AsyncSession, server_id: uuid.UUID) -> Server:
    """The server's row, locked until the transaction ends (SQLite: its one writer)."""
    server = await _locked(db, server_id)
    if server is None:
        raise NotFound("no such server")
    return server


async def _locked(db: AsyncSession, server_id: uuid.UUID) -> Server | None:
    return await db.scalar(
        select(Server)
        .where(Server.id == server_id)
        .with_for_update(key_share=True)  # not the foreign-key checks of rows naming it
        .execution_options(populate_existing=True)
    )


async def as_stored(db: AsyncSession, server: Server) -> ServerSpec:
    """The spec of the server as stored (for a send that changes nothing: a start)."""
    return await startup.build_spec(db, server)


@dataclass(frozen=True)
class Numbered:
    """A spec numbered and built (committed), to be sent to ``node``."""

    spec: ServerSpec
    node: Node


async def number(begin: Begin, server_id: uuid.UUID, build: Build, *, above: int = 0) -> Numbered:
    """Number the next spec (above ``above`` too) and build it, in a transaction of its own
    (committed). The node's row is locked before the server's (``placement.lock_node``)."""
    async with begin() as db:
        node_id = await db.scalar(select(Server.node_id).where(Server.id == server_id))
        if node_id is None:
            raise NotFound("no such server")
        node = await placement.lock_node(db, node_id)
        server = await locked_server(db, server_id)
        server.spec_revision = max(server.spec_revision, above) + 1
        return Numbered(await build(db, server), node)


async def send(
    begin: Begin, nodes: NodeClient, server_id: uuid.UUID, build: Build, *, user: str
) -> ServerSpec:
    """Number the next spec, build it, and give it to the node (its refusal is raised).
    Returns the spec sent."""
    return await deliver(begin, nodes, await number(begin, server_id, build), build, user=user)


async def deliver(
    begin: Begin, nodes: NodeClient, numbered: Numbered, build: Build, *, user: str
) -> ServerSpec:
    """Give the node a numbered spec; returns the one it keeps of those sent. A node that
    answers that it keeps one numbered beyond it (another request's got there first, or the
    database was restored from a backup older than the node's spec) is sent it again,
    built anew and numbered above that."""
    status = await nodes.update_spec(numbered.node, numbered.spec, user=user)
    if status.spec_revision <= numbered.spec.revision:
        return numbered.spec
    log.info(
        "node keeps a newer spec: numbering above it",
        server=str(numbered.spec.uuid),
        sent=numbered.spec.revision,
        kept=status.spec_revision,
    )
    again = await number(begin, numbered.spec.uuid, build, above=status.spec_revision)
    status = await nodes.update_spec(again.node, again.spec, user=user)
    if status.spec_revision > again.spec.revision:
        raise Conflict(CHANGED_MEANWHILE)
    return again.spec


async def send_then_store(
    begin: Begin,
    nodes: NodeClient,
    server_id: uuid.UUID,
    build: Build,
    store: Store[T],
    *,
    user: str,
) -> T:
    """Give the node the spec the change makes, then store the change, unless another spec
    was numbered meanwhile: then again from the row as it is now (up to :data:`ATTEMPTS`
    sends, then 409). A node that refuses or cannot be reached leaves nothing stored."""
    for _ in range(ATTEMPTS):
        sent = await send(begin, nodes, server_id, build, user=user)
        async with begin() as db:
            server = await locked_server(db, server_id)
            if server.spec_revision == sent.revision:
                return await store(db, server)
    raise Conflict(CHANGED_MEANWHILE)
