"""Locations, nodes and allocations (administrators)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import uuid

from pydantic import Field, field_validator, model_validator

from control_plane.nodes.tls import normalize_fingerprint
from control_plane.schemas.common import Input, Output


def _pin(value: str | None) -> str | None:
    return None if value is None else normalize_fingerprint(value)


class LocationCreate(Input):
    code: str = Field(min_length=1, max_length=32, pattern=r"^[a-z0-9][a-z0-9._-]*$")
    description: str = Field("", max_length=255)


class LocationUpdate(Input):
    """A new code (the location's name), a new description, or both."""

    code: str | None = Field(None, min_length=1, max_length=32, pattern=r"^[a-z0-9][a-z0-9._-]*$")
    description: str | None = Field(None, max_length=255)


class LocationOut(Output):
    id: uuid.UUID
    code: str
    description: str
    created_at: dt.datetime


class LocationList(Output):
    data: list[LocationOut]


class NodeCreate(Input):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    url: str = Field(min_length=8, max_length=255)
    location_id: uuid.UUID | None = None
    memory_mib: int = Field(0, ge=0, le=16 * 1024 * 1024)
    disk_mib: int = Field(0, ge=0, le=1024 * 1024 * 1024)
    tls_fingerprint: str | None = Field(None, max_length=128)

    @field_validator("tls_fingerprint")
    @classmethod
    def _fingerprint(cls, value: str | None) -> str | None:
        return _pin(value)


class NodeUpdate(Input):
    url: str | None = Field(None, min_length=8, max_length=255)
    location_id: uuid.UUID | None = None
    memory_mib: int | None = Field(None, ge=0, le=16 * 1024 * 1024)
    disk_mib: int | None = Field(None, ge=0, le=1024 * 1024 * 1024)
    tls_fingerprint: str | None = Field(None, max_length=128)

    @field_validator("tls_fingerprint")
    @classmethod
    def _fingerprint(cls, value: str | None) -> str | None:
        return _pin(value)


class NodeOut(Output):
    id: uuid.UUID
    name: str
    url: str
    location_id: uuid.UUID | None
    memory_mib: int
    disk_mib: int
    tls_fingerprint: str | None
    status: str
    last_seen_at: dt.datetime | None
    # The node's clock minus the control plane's (s), as last measured; None: never.
    clock_offset_seconds: float | None = None
    created_at: dt.datetime


class NodeCreated(NodeOut):
    """With the agent's config, to copy to the node once."""

    agent_config: str


class NodeList(Output):
    data: list[NodeOut]


class AllocationCreate(Input):
    """One port, or a range ``port``..``port_end`` (at most 1000 at once)."""

    ip: str = Field(max_length=45)
    port: int = Field(ge=1024, le=65535)
    port_end: int | None = Field(None, ge=1024, le=65535)

    @field_validator("ip")
    @classmethod
    def _ip(cls, value: str) -> str:
        try:
            return str(ipaddress.ip_address(value))
        except ValueError as err:
            raise ValueError("must be an IP address literal") from err

    @model_validator(mode="after")
    def _range(self) -> AllocationCreate:
        if self.port_end is not None and not self.port <= self.port_end < self.port + 1000:
            raise ValueError("port_end must be at least port and cover at most 1000 ports")
        return self


class AllocationOut(Output):
    id: uuid.UUID
    node_id: uuid.UUID
    ip: str
    port: int
    server_id: uuid.UUID | None


class AllocationList(Output):
    data: list[AllocationOut]
