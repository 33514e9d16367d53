"""The server list's search and its servers' latest resource use."""

from __future__ import annotations

from pydantic import Field

from control_plane.schemas.common import Input, Output

SERVERS_PER_PAGE = 50


class ServerSearch(Input):
    """One page of my servers, optionally only those whose name contains ``q``."""

    page: int = Field(1, ge=1, le=100_000)
    q: str = Field("", max_length=100, description="Part of a server's name (any case)")


class ResourceUse(Output):
    """A server's average use over its latest 10 seconds."""

    server_id: str
    cpu_percent: float
    memory_bytes: int
    at: int = Field(description="When those 10 seconds ended (seconds since the epoch)")


class ResourceUseList(Output):
    """Only servers sampled in the last minute (running, their node reachable) are listed."""

    data: list[ResourceUse]
