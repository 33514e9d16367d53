"""Lists of servers: one page of those a caller may see, in one statement."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

from sqlalchemy import Select, Uuid, and_, bindparam, func, select, true, type_coerce

from control_plane.db.models import Allocation, Server, Subuser
from control_plane.db.models.base import UuidText
from control_plane.db.models.listing import listing_version_column, user_listing_version_column
from control_plane.db.reader import StatementReader
from control_plane.security.caller import Caller

_CALLER_ID: Final = bindparam("caller_id", type_=Uuid())


class ServerColumns(NamedTuple):
    """What a server list shows of each server: these columns of ``servers``, in this order."""

    id: uuid.UUID | str  # lists read ids as text (see UuidText)
    name: str
    owner_id: uuid.UUID | str
    node_id: uuid.UUID | str
    blueprint_id: uuid.UUID | str
    image: str
    state: str
    suspended: bool
    memory_mib: int
    swap_mib: int
    cpu_percent: int
    disk_mib: int
    pids_limit: int
    created_at: dt.datetime


_LISTED_COLUMNS: Final = tuple(getattr(Server, name) for name in ServerColumns._fields)
_LISTED = len(_LISTED_COLUMNS)


@dataclass(frozen=True)
class PageColumns:
    """What a list reads beyond ours, in the same statement: more columns of each server
    (of ``servers`` or expressions on it), and more of each of its allocations."""

    server: tuple[Any, ...] = ()
    allocation: tuple[Any, ...] = ()


@dataclass(frozen=True)
class _Shape:
    """Where each value sits in a page's rows: the listed columns, the extra server
    columns, one allocation's ip, port and extra columns, the total and (for users who are
    not administrators) their sub-user permissions, and the lists' version; read by position
    (fast)."""

    extra: PageColumns

    @property
    def ip(self) -> int:
        return _LISTED + len(self.extra.server)

    @property
    def total(self) -> int:
        return self.ip + 2 + len(self.extra.allocation)

    @property
    def version(self) -> int:
        return self.total + 1

    @property
    def permissions(self) -> int:
        return self.total + 2


def name_pattern(search: str) -> str:
    """A LIKE pattern for names containing ``search`` (its ``%``, ``_`` and ``\\`` literal)."""
    escaped = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _page_statement(
    *, admin: bool, extra: PageColumns = PageColumns(), search: bool = False
) -> Select[Any]:
    """One page of the servers a caller may see, with its total, ports and the caller's
    sub-user permissions, as one statement (so one snapshot, and no transaction needed);
    with ``search``, only those whose name matches the ``name_pattern`` parameter (any case).

    Every row is a server of the page joined with one of its allocations (or none); the
    count sits in a one-row subquery that the page is left-joined to, so that a page past
    the end still brings the total.
    """
    page = select(*_LISTED_COLUMNS, *extra.server)
    total = select(func.count().label("total")).select_from(Server)
    if not admin:
        shared = select(Subuser.server_id).where(Subuser.user_id == _CALLER_ID)
        visible = (Server.owner_id == _CALLER_ID) | Server.id.in_(shared)
        page, total = page.where(visible), total.where(visible)
    if search:
        named = Server.name.ilike(bindparam("name_pattern"), escape="\\")
        page, total = page.where(named), total.where(named)
    paged = (
        page.order_by(Server.name, Server.id)
        .limit(bindparam("limit"))
        .offset(bindparam("offset"))
        .subquery("page")
    )
    counted = total.subquery("total")
    joined = counted.outerjoin(paged, true()).outerjoin(
        Allocation, Allocation.server_id == paged.c.id
    )
    # Ids as text: they are only sent on (see UuidText).
    listed = [
        type_coerce(c, UuidText()).label(c.key) if isinstance(c.type, Uuid) else c for c in paged.c
    ]
    columns: list[Any] = [
        *listed,
        Allocation.ip,
        Allocation.port,
        *extra.allocation,
        counted.c.total,
        # In the page's snapshot: this page is the page of every snapshot at this version
        # (everyone's lists' for administrators, the caller's own for users).
        listing_version_column() if admin else user_listing_version_column(_CALLER_ID),
    ]
    if not admin:
        joined = joined.outerjoin(
            Subuser, and_(Subuser.server_id == paged.c.id, Subuser.user_id == _CALLER_ID)
        )
        columns.append(Subuser.permissions)
    return (
        select(*columns)
        .select_from(joined)
        .order_by(paged.c.name, paged.c.id, Allocation.is_primary.desc(), Allocation.port)
    )


# Built once: building a statement costs more than running this one.
_ADMIN_PAGE: Final = _page_statement(admin=True)
_USER_PAGE: Final = _page_statement(admin=False)
_ADMIN_SEARCH: Final = _page_statement(admin=True, search=True)
_USER_SEARCH: Final = _page_statement(admin=False, search=True)


class ListedServer(NamedTuple):
    """A server as lists show it."""

    columns: ServerColumns
    # (ip, port) of each allocation, the main port first (allocations_of's order).
    allocations: list[tuple[str, int]]
    # ["*"] for owners and administrators, else the sub-user's permission nodes, sorted.
    permissions: list[str]
    # The values of ``PageColumns.server``, and of ``PageColumns.allocation`` per allocation.
    extra: tuple[Any, ...] = ()
    allocation_extra: tuple[tuple[Any, ...], ...] = ()


def listed_server(
    server: Server, allocations: list[Allocation], permissions: list[str]
) -> ListedServer:
    """An entity as lists show it (single-server routes answer the same shape)."""
    return ListedServer(
        ServerColumns._make(getattr(server, name) for name in ServerColumns._fields),
        [(a.ip, a.port) for a in allocations],
        permissions,
    )


@dataclass(frozen=True)
class ServerPage:
    servers: list[ListedServer]
    # How many servers the caller may see in all.
    total: int
    # The lists' version in the snapshot that read the page (None without the triggers).
    version: int | None = None


def page_statements(extra: PageColumns) -> tuple[Select[Any], Select[Any]]:
    """The statements of :func:`server_page` (for administrators, for users) that also read
    ``extra``; build them once."""
    return _page_statement(admin=True, extra=extra), _page_statement(admin=False, extra=extra)


async def server_page(
    reader: StatementReader,
    caller: Caller,
    *,
    offset: int,
    limit: int,
    extra: tuple[PageColumns, tuple[Select[Any], Select[Any]]] | None = None,
    name: str | None = None,
) -> ServerPage:
    """The servers a caller may list (all for those acting as administrators, else owned or
    shared with them), ordered by name, one page of them, in one statement (with ``extra``:
    the columns and the statements of :func:`page_statements`; with ``name``, only servers
    whose name contains it, in any case — not together with ``extra``)."""
    params: dict[str, Any] = {"caller_id": caller.user_id, "limit": limit, "offset": offset}
    if name:
        if extra is not None:
            raise ValueError("a name search reads no extra columns")
        shape = _Shape(PageColumns())
        statement = _ADMIN_SEARCH if caller.acts_as_admin else _USER_SEARCH
        params["name_pattern"] = name_pattern(name)
    elif extra is None:
        shape = _Shape(PageColumns())
        statement = _ADMIN_PAGE if caller.acts_as_admin else _USER_PAGE
    else:
        shape = _Shape(extra[0])
        statement = extra[1][0] if caller.acts_as_admin else extra[1][1]
    rows = await reader.fixed_rows(statement, params)
    caller_id = str(caller.user_id)
    ip, total = shape.ip, shape.total
    servers: list[ListedServer] = []
    ports: list[tuple[Any, ...]] = []
    for row in rows:
        server_id = row[0]
        if server_id is None:  # the page is past the end: only the total came
            break
        if not servers or servers[-1].columns.id != server_id:
            columns = ServerColumns._make(row[:_LISTED])
            if caller.acts_as_admin or columns.owner_id == caller_id:
                permissions = ["*"]
            else:
                permissions = sorted(row[shape.permissions] or ())
            ports = []
            servers.append(ListedServer(columns, [], permissions, tuple(row[_LISTED:ip]), ()))
        if row[ip] is not None:
            servers[-1].allocations.append((row[ip], row[ip + 1]))
            if shape.extra.allocation:
                ports.append(tuple(row[ip + 2 : total]))
                servers[-1] = servers[-1]._replace(allocation_extra=tuple(ports))
    if not rows:  # never: the one-row count is always there
        return ServerPage(servers, 0)
    return ServerPage(servers, rows[0][total], rows[0][shape.version])
