"""Pull a file from a user-given URL into a server's volume, through the SSRF guard.

The fetch is :meth:`shared.outbound.OutboundClient.fetch` (public addresses only, every redirect
re-checked, body capped); the body is streamed into an atomic write like an upload. The file
name is the request's, else the response's Content-Disposition filename, else the URL's last
path segment, each reduced to one safe component; :class:`ServerSlots` lets each server run only
a few pulls at once (and, in ``service.py``, one archive job).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final
from urllib.parse import unquote

from aiohttp.multipart import content_disposition_filename, parse_content_disposition
from multidict import CIMultiDictProxy
from yarl import URL

from node_agent.files.errors import InvalidPath, TooManyAtOnce
from node_agent.files.paths import MAX_NAME_BYTES, check_name

FALLBACK_NAME: Final = "download"
_UNSAFE: Final = re.compile(r"[\x00-\x1f\x7f]")


def sanitise_name(raw: str | None) -> str | None:
    """One safe file-name component from ``raw`` (its last path segment), or None."""
    if not raw:
        return None
    name = _UNSAFE.sub("", raw.replace("\\", "/").rsplit("/", 1)[-1]).strip()
    encoded = name.encode("utf-8", errors="ignore")[:MAX_NAME_BYTES]
    name = encoded.decode("utf-8", errors="ignore")
    try:
        return check_name(name)
    except InvalidPath:
        return None


def pulled_file_name(headers: CIMultiDictProxy[str], url: URL) -> str:
    """The name for a pulled file: Content-Disposition's filename, the URL's, or a default."""
    disposition = headers.get("Content-Disposition")
    if disposition:
        kind, params = parse_content_disposition(disposition)
        if kind:
            name = sanitise_name(content_disposition_filename(params, "filename"))
            if name:
                return name
    return sanitise_name(unquote(url.path)) or FALLBACK_NAME


class ServerSlots:
    """Counts running jobs of one kind (``what``) per server; one past the limit is refused
    with 429."""

    def __init__(self, per_server: int, what: str) -> None:
        self._per_server = per_server
        self._what = what
        self._running: dict[uuid.UUID, int] = {}

    @contextmanager
    def slot(self, server_id: uuid.UUID) -> Iterator[None]:
        """Hold one of the server's slots for the block."""
        running = self._running.get(server_id, 0)
        if running >= self._per_server:
            raise TooManyAtOnce(
                f"this server already runs {running} {self._what}; wait for one to finish",
                headers={"Retry-After": "10"},
            )
        self._running[server_id] = running + 1
        try:
            yield
        finally:
            left = self._running[server_id] - 1
            if left:
                self._running[server_id] = left
            else:
                del self._running[server_id]
