"""``/api/client``: Pterodactyl's Client API for bots and client libraries (a user's
``ptlc_`` key, our ``stl_`` keys and sessions), over our own routes and services.

Servers are named by their 8-character identifier; our permission nodes are shown with
Pterodactyl's names (``PERMISSION_NAMES``).
"""

from __future__ import annotations

from typing import Any, Final, NamedTuple

from pydantic import BaseModel, ValidationError
from sqlalchemy import select

from control_plane.api import console_socket, server_actions
from control_plane.api import servers as native
from control_plane.api.compat.envelope import CompatObject, item, page_bytes
from control_plane.api.compat.ids import CLIENT_IDS
from control_plane.api.compat.transform import SERVER_DEFAULTS, server_status
from control_plane.api.list_cache import server_page_json
from control_plane.api.routing import ApiRequest, ApiRoutes, JsonBytes
from control_plane.db.models import Allocation, Blueprint, Node, Server
from control_plane.errors import Conflict, InvalidRequest, UpstreamFailed
from control_plane.keys import LIST_CACHE
from control_plane.schemas.compat import ClientServersQuery, ConsoleCommand, PowerSignal
from control_plane.schemas.servers import CommandIn, PowerIn
from control_plane.security.permissions import VIEW, expand, holds
from control_plane.services import records
from control_plane.services.servers import listing
from control_plane.services.servers.placement import allocations_of
from shared.node_api import ServerDisk
from shared.server_spec import ServerStats

routes = ApiRoutes("pterodactyl client", path_ids=CLIENT_IDS)
ROOT = "/api/client"
SERVER = ROOT + "/servers/{server_id}"

# Our permission node → Pterodactyl's names for what it allows.
PERMISSION_NAMES: Final = {
    "control.start": ("control.start",),
    "control.stop": ("control.stop",),
    "control.restart": ("control.restart",),
    "control.kill": ("control.stop",),
    "console.read": ("websocket.connect",),
    "console.write": ("control.console",),
    "stats.read": ("websocket.connect",),
    "files.read": ("file.read", "file.read-content"),
    "files.write": ("file.update",),
    "files.create": ("file.create",),
    "files.delete": ("file.delete",),
    "files.sftp": ("file.sftp",),
    "files.archive": ("file.archive",),
    "backups.read": ("backup.read",),
    "backups.create": ("backup.create",),
    "backups.delete": ("backup.delete",),
    "backups.restore": ("backup.restore",),
    "backups.download": ("backup.download",),
    "allocations.read": ("allocation.read",),
    "allocations.update": ("allocation.update",),
    "allocations.create": ("allocation.create",),
    "allocations.delete": ("allocation.delete",),
    "startup.read": ("startup.read",),
    "startup.update": ("startup.update",),
    "startup.docker-image": ("startup.docker-image",),
    "settings.rename": ("settings.rename",),
    "settings.reinstall": ("settings.reinstall",),
    "activity.read": ("activity.read",),
    "schedules.read": ("schedule.read",),
    "schedules.create": ("schedule.create",),
    "schedules.update": ("schedule.update",),
    "schedules.delete": ("schedule.delete",),
    "users.read": ("user.read",),
    "users.create": ("user.create",),
    "users.update": ("user.update",),
    "users.delete": ("user.delete",),
}
# Our states → Pterodactyl's four.
STATES: Final = {"starting": "starting", "running": "running", "stopping": "stopping"}


def pterodactyl_permissions(granted: list[str]) -> list[str]:
    """What ``granted`` (our nodes, with wildcards) allows, in Pterodactyl's names."""
    if "*" in granted:
        return ["*"]
    names = {name for node in expand(granted) for name in PERMISSION_NAMES.get(node, ())}
    return sorted(names)


class _Extra(NamedTuple):
    """What the client shows of a server beyond our list's columns (``_COLUMNS.server``)."""

    identifier: str | None
    compat_id: int | None
    description: str
    compat_fields: dict[str, Any] | None
    port_limit: int
    node_name: str
    startup: str
    features: list[str]


# Read by our list's one statement: the same visibility rule and paging, more columns.
_COLUMNS: Final = listing.PageColumns(
    server=(
        Server.identifier,
        Server.compat_id,
        Server.description,
        Server.compat_fields,
        Server.port_limit,
        select(Node.name).where(Node.id == Server.node_id).scalar_subquery().label("node_name"),
        select(Blueprint.startup)
        .where(Blueprint.id == Server.blueprint_id)
        .scalar_subquery()
        .label("startup"),
        select(Blueprint.features)
        .where(Blueprint.id == Server.blueprint_id)
        .scalar_subquery()
        .label("features"),
    ),
    allocation=(Allocation.compat_id, Allocation.notes),
)
_STATEMENTS: Final = listing.page_statements(_COLUMNS)


def _client_server(listed: listing.ListedServer, owner: bool) -> dict[str, Any]:
    columns = listed.columns
    extra = _Extra._make(listed.extra)
    kept = {**SERVER_DEFAULTS, **(extra.compat_fields or {})}
    status = server_status(columns.state, columns.suspended)
    # The ports' notes are for those who may read the ports page (allocations.read), as
    # on our API; the addresses are every member's (to connect).
    noted = holds(listed.permissions, "allocations.read")
    ports = [
        (number, ip, port, notes if noted else None)
        for (ip, port), (number, notes) in zip(
            listed.allocations, listed.allocation_extra, strict=True
        )
    ]
    return {
        "object": "server",
        "attributes": {
            "server_owner": owner,
            "identifier": extra.identifier,
            "internal_id": extra.compat_id,
            "uuid": str(columns.id),
            "name": columns.name,
            "node": extra.node_name,
            "is_node_under_maintenance": False,
            "sftp_details": {"ip": ports[0][1] if ports else "", "port": 2022},
            "description": extra.description,
            "limits": {
                "memory": columns.memory_mib,
                "swap": columns.swap_mib,
                "disk": columns.disk_mib,
                "io": kept["io"],
                "cpu": columns.cpu_percent,
                "threads": kept["threads"],
                "oom_disabled": kept["oom_disabled"],
            },
            "invocation": extra.startup,
            "docker_image": columns.image,
            "egg_features": extra.features,
            "feature_limits": {
                "databases": kept["databases"],
                "allocations": extra.port_limit,
                "backups": kept["backups"],
            },
            "status": status,
            "is_suspended": columns.suspended,
            "is_installing": status == "installing",
            "is_transferring": False,
            "relationships": {
                "allocations": {
                    "object": "list",
                    "data": [
                        {
                            "object": "allocation",
                            "attributes": {
                                "id": number,
                                "ip": ip,
                                "ip_alias": None,
                                "port": port,
                                "notes": notes,
                                "is_default": index == 0,
                            },
                        }
                        for index, (number, ip, port, notes) in enumerate(ports)
                    ],
                }
            },
        },
    }


@routes.get(
    ROOT,
    summary="Pterodactyl: the servers I may see",
    query=ClientServersQuery,
    response=CompatObject,
    transactional=False,
    kept_lists=True,
)
async def list_servers(req: ApiRequest[Any, ClientServersQuery]) -> JsonBytes:
    return await _list(req)


async def _list(req: ApiRequest[Any, ClientServersQuery]) -> JsonBytes:
    q = req.query
    me = str(req.me.user_id)

    def entries(listed: listing.ServerPage) -> list[dict[str, Any]]:
        return [_client_server(s, str(s.columns.owner_id) == me) for s in listed.servers]

    # Our list decides what the caller sees, and reads the rest in its one statement; the
    # entries are kept as ours are (api/list_cache.py), the links are the request's own.
    kept = await server_page_json(
        req.http.app[LIST_CACHE],
        req.reader,
        req.me,
        name="pterodactyl-client",
        offset=q.offset,
        limit=q.per_page,
        render=entries,
        extra=(_COLUMNS, _STATEMENTS),
    )
    return page_bytes(req, kept.entries, kept.count, kept.total)


@routes.get(
    ROOT + "/",
    summary="Pterodactyl: the servers I may see (as some clients spell it)",
    query=ClientServersQuery,
    response=CompatObject,
    transactional=False,
    kept_lists=True,
)
async def list_servers_trailing_slash(req: ApiRequest[Any, ClientServersQuery]) -> JsonBytes:
    return await _list(req)


@routes.get(
    SERVER, summary="Pterodactyl: one of my servers", permission=VIEW, response=CompatObject
)
async def get_server(req: ApiRequest[Any, Any]) -> dict[str, Any]:
    server = req.server
    allocations = await allocations_of(req.db, server.id)
    node = await records.get_or_404(req.db, Node, server.node_id, "node")
    blueprint = await records.get_or_404(req.db, Blueprint, server.blueprint_id, "egg")
    extra = _Extra(
        server.identifier,
        server.compat_id,
        server.description,
        server.compat_fields,
        server.port_limit,
        node.name,
        blueprint.startup,
        blueprint.features,
    )
    listed = listing.listed_server(server, allocations, sorted(req.access.permissions))._replace(
        extra=tuple(extra), allocation_extra=tuple((a.compat_id, a.notes) for a in allocations)
    )
    owner = server.owner_id == req.me.user_id
    answer = _client_server(listed, owner)
    answer["meta"] = {
        "is_server_owner": owner,
        "user_permissions": pterodactyl_permissions(sorted(req.access.permissions))
        if req.access.role == "subuser"
        else ["*"],
    }
    return answer


@routes.get(
    SERVER + "/resources",
    summary="Pterodactyl: the server's state and resource use now",
    permission="stats.read",
    response=CompatObject,
    transactional=False,
    calls_node=True,
)
async def resources(req: ApiRequest[Any, Any]) -> dict[str, Any]:
    stats = await native.stats(req)
    assert isinstance(stats, ServerStats)
    node = await req.server_node()
    disk: ServerDisk = await req.nodes.disk(node, req.server.id, user=str(req.me.user_id))
    return item(
        "stats",
        {
            "current_state": STATES.get(stats.state, "offline"),
            "is_suspended": req.server.suspended,
            "resources": {
                "memory_bytes": stats.memory_bytes,
                "cpu_absolute": round(stats.cpu_percent, 3),
                "disk_bytes": disk.used_bytes,
                "network_rx_bytes": stats.network_rx_bytes,
                "network_tx_bytes": stats.network_tx_bytes,
                "uptime": int((stats.uptime_seconds or 0) * 1000),
            },
        },
    )


@routes.post(
    SERVER + "/power",
    summary="Pterodactyl: start, stop, restart or kill (each needs its control.* permission)",
    permission=VIEW,
    body=PowerSignal,
    status=204,
    rate_limit=server_actions.POWER_PRESET,
    transactional=False,
    calls_node=True,
)
async def power(req: ApiRequest[Any, Any]) -> None:
    signal: PowerSignal = req.body
    req.body = PowerIn(action=signal.signal)
    await native.power(req)


@routes.post(
    SERVER + "/command",
    summary="Pterodactyl: send a line to the game's console (502 when it is not running)",
    permission=server_actions.COMMAND_PERMISSION,
    body=ConsoleCommand,
    status=204,
    transactional=False,
    calls_node=True,
)
async def send_command(req: ApiRequest[Any, Any]) -> None:
    line: ConsoleCommand = req.body
    try:
        req.body = CommandIn(command=line.command)
    except ValidationError as err:
        raise InvalidRequest.from_validation(err, "invalid request body") from err
    try:
        await native.send_command(req)
    except (InvalidRequest, Conflict) as err:
        # The node refuses a line for a game that is not running: Pterodactyl's 502.
        raise UpstreamFailed("Server must be online in order to send commands.") from err


class ConsoleSocketOut(BaseModel):
    """``{"data": {"token", "socket"}}``, as Pterodactyl answers."""

    data: dict[str, str]


@routes.get(
    SERVER + "/websocket",
    summary="Pterodactyl: a console token and the socket to send it to (Wings' protocol)",
    permission="console.read",
    response=ConsoleSocketOut,
)
async def websocket(req: ApiRequest[Any, Any]) -> dict[str, Any]:
    issued = console_socket.issue_token(req)
    return {"data": {"token": issued.token, "socket": issued.socket}}
