"""Game servers on this node: create, read, delete, power.

Every route names one server in its path, so the command token's ``sub`` is bound to it
(``server:<uuid>``); that is why a server is created with ``PUT /api/v1/servers/{uuid}``
and a body whose ``uuid`` must be the same.

    PUT    /api/v1/servers/{server_id}         server.create   ServerSpec -> 201 ServerStatus
    GET    /api/v1/servers/{server_id}         server.read     -> ServerStatus
    DELETE /api/v1/servers/{server_id}         server.delete   -> 204
    POST   /api/v1/servers/{server_id}/power   server.power    PowerAction -> 200/202 ServerStatus
    PUT    /api/v1/servers/{server_id}/spec    server.update   ServerSpec -> 200 ServerStatus
    POST   /api/v1/servers/{server_id}/reinstall  server.reinstall  -> 202 ServerStatus

``start`` and ``kill`` answer 200 when done; ``stop`` and ``restart`` answer 202 at once and
finish in the background (``stopping`` is true in the status until then). Console, logs and
stats are in ``api/console.py``.

``PUT .../spec`` replaces the whole spec (its ``uuid`` must be the server in the path) in the
server's record; a stopped game's container is rebuilt with it at once, a running one's at
its next start or restart (``spec_pending`` is true in the status until then). The volume
and its disk limit are untouched. ``POST .../reinstall`` needs the game stopped (409
otherwise): it rebuilds the container and, if the spec has an install step, runs it again in
the background (state ``installing``, then an install event).
"""

from __future__ import annotations

import uuid
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from node_agent.keys import SERVERS, STATS
from node_agent.security.verify import serves
from shared import strict_json
from shared.errors import InvalidRequest, NotFound
from shared.node_endpoints import (
    SERVER_CREATE,
    SERVER_DELETE,
    SERVER_POWER,
    SERVER_READ,
    SERVER_REINSTALL,
    SERVER_UPDATE,
    NodeEndpoint,
)
from shared.server_spec import ServerStatus

routes = web.RouteTableDef()
Body = TypeVar("Body", bound=BaseModel)


def server_id_of(request: web.Request) -> uuid.UUID:
    """The server named in the path (404 for anything that is not a uuid)."""
    try:
        return uuid.UUID(request.match_info["server_id"])
    except ValueError as err:
        raise NotFound("no such server on this node") from err


async def parse_body(request: web.Request, endpoint: NodeEndpoint[Body, Any]) -> Body:
    """The request body validated by the endpoint's request model (400 with field details
    otherwise).

    Read strictly first, as the command token is: the body's hash is signed, so it must have
    one meaning; a repeated member (pydantic would keep the last) or a byte order mark is
    refused, never guessed at.
    """
    raw = await request.read()
    try:
        strict_json.loads(raw)
    except strict_json.NotStrictJson as err:
        raise InvalidRequest(f"the body is not strict JSON: {err.reason}") from err
    try:
        return endpoint.request.model_validate_json(raw)
    except ValidationError as err:
        raise InvalidRequest.from_validation(err) from err


def _answer(status: ServerStatus, code: int = 200) -> web.Response:
    return web.json_response(text=status.model_dump_json(), status=code)


@serves(routes, SERVER_CREATE)
async def create_server(request: web.Request) -> web.Response:
    """Create the server's volume and game container (and run its installer, if any)."""
    server_id = server_id_of(request)
    spec = await parse_body(request, SERVER_CREATE)
    if spec.uuid != server_id:
        raise InvalidRequest("the body's uuid is not the server in the path")
    status = await request.app[SERVERS].create(spec)
    return _answer(status, 201)


@serves(routes, SERVER_READ)
async def read_server(request: web.Request) -> web.Response:
    """The server's install phase and container state."""
    return _answer(await request.app[SERVERS].status(server_id_of(request)))


@serves(routes, SERVER_DELETE)
async def delete_server(request: web.Request) -> web.Response:
    """Kill and remove the server's containers, volume and record."""
    server_id = server_id_of(request)
    await request.app[SERVERS].delete(server_id)
    request.app[STATS].forget(server_id)
    return web.Response(status=204)


@serves(routes, SERVER_POWER)
async def power_server(request: web.Request) -> web.Response:
    """Start, stop, restart or kill the game."""
    action = await parse_body(request, SERVER_POWER)
    server = request.app[SERVERS].get(server_id_of(request))
    await server.power(action.action)
    return _answer(await server.status(), 202 if action.action in {"stop", "restart"} else 200)


@serves(routes, SERVER_UPDATE)
async def update_spec(request: web.Request) -> web.Response:
    """Replace the server's spec; the game container gets it now if stopped, else at start."""
    server_id = server_id_of(request)
    spec = await parse_body(request, SERVER_UPDATE)
    if spec.uuid != server_id:
        raise InvalidRequest("the body's uuid is not the server in the path")
    return _answer(await request.app[SERVERS].update_spec(spec))


@serves(routes, SERVER_REINSTALL)
async def reinstall_server(request: web.Request) -> web.Response:
    """Run the install step again on the stopped server (in the background)."""
    return _answer(await request.app[SERVERS].reinstall(server_id_of(request)), 202)
