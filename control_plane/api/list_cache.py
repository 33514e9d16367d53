"""Server lists answered again while nothing they show has changed, per replica.

A page is kept as its JSON entries under (list, user, whether the caller acts as an
administrator, offset, limit) together with the version its statement read: everyone's for
an administrator acting as one, the user's own otherwise (``db/models/listing.py``: changed
by triggers in the same transaction as every write that list can show). It is answered
again only to a caller whose authentication read (on a route with ``kept_lists``) saw that
same version, in the same statement and snapshot as the credential. So authorization is
never cached: the credential, the user, the scopes and the route's requirement are read and
decided on every request as before, and any change a list could show (a server renamed,
suspended, moved to another owner, a sub-user added or removed, a permission changed, an
allocation, a state) changes the version, on every replica at once, for the very next
request.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import orjson
from sqlalchemy import Select

from control_plane.db.reader import StatementReader
from control_plane.security.caller import Caller
from control_plane.services.servers import listing

# What a replica keeps at most (the bench's page of 50 servers is 25 to 41 kB).
MAX_BYTES: Final = 16 * 1024 * 1024


@dataclass(frozen=True)
class CachedPage:
    """A page's entries as a JSON array, and what its envelope says of them."""

    version: int | None
    entries: bytes
    count: int
    total: int


def _uuid_text(value: object) -> str:
    # orjson writes uuid.UUID itself, not subclasses such as asyncpg's.
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def json_bytes(value: Any) -> bytes:
    """``value`` as the API writes JSON (UTC times with ``Z``)."""
    return orjson.dumps(value, default=_uuid_text, option=orjson.OPT_UTC_Z)


class ListCache:
    """Pages by key, the least recently answered dropped first beyond ``max_bytes``."""

    def __init__(self, max_bytes: int = MAX_BYTES) -> None:
        self._pages: OrderedDict[tuple[Any, ...], CachedPage] = OrderedDict()
        self._bytes = 0
        self._max_bytes = max_bytes
        # Pages answered from here, and read anew (tests, and a look at how well it works).
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple[Any, ...], version: int | None) -> CachedPage | None:
        """The page kept under ``key`` if it was read at ``version``, else None."""
        if version is None:
            self.misses += 1
            return None
        page = self._pages.get(key)
        if page is None or page.version != version:
            self.misses += 1
            return None
        self.hits += 1
        self._pages.move_to_end(key)
        return page

    def put(self, key: tuple[Any, ...], page: CachedPage) -> None:
        if page.version is None or len(page.entries) > self._max_bytes:
            return
        old = self._pages.pop(key, None)
        if old is not None:
            self._bytes -= len(old.entries)
        self._pages[key] = page
        self._bytes += len(page.entries)
        while self._bytes > self._max_bytes:
            _, dropped = self._pages.popitem(last=False)
            self._bytes -= len(dropped.entries)

    @property
    def size_bytes(self) -> int:
        """Bytes of the kept pages' entries."""
        return self._bytes

    def clear(self) -> None:
        """Forget every page (tests compare a kept answer with one read anew)."""
        self._pages.clear()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._pages)


async def server_page_json(
    cache: ListCache,
    reader: StatementReader,
    caller: Caller,
    *,
    name: str,
    offset: int,
    limit: int,
    render: Callable[[listing.ServerPage], list[dict[str, Any]]],
    extra: tuple[listing.PageColumns, tuple[Select[Any], Select[Any]]] | None = None,
) -> CachedPage:
    """The caller's page of servers rendered by ``render`` (entries that depend on nothing
    but the page and the caller's user id), from the cache when the caller's authentication
    read saw the version the kept page was read at, else read now (and kept)."""
    key = (name, caller.user_id, caller.acts_as_admin, offset, limit)
    kept = cache.get(key, caller.lists_version)
    if kept is not None:
        return kept
    page = await listing.server_page(reader, caller, offset=offset, limit=limit, extra=extra)
    fresh = CachedPage(page.version, json_bytes(render(page)), len(page.servers), page.total)
    cache.put(key, fresh)
    return fresh
