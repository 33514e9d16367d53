"""Game servers as owners, sub-users and administrators see them."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Literal

from pydantic import Field, field_validator, model_validator

from control_plane.schemas.common import Input, Output
from shared.server_spec import CONSOLE_TEXT


class ServerCreate(Input):
    """Administrators create servers for an owner on a node (or in a location)."""

    name: str = Field(min_length=1, max_length=64)
    owner_id: uuid.UUID
    blueprint_id: uuid.UUID
    node_id: uuid.UUID | None = None
    location_id: uuid.UUID | None = None
    # One free allocation of ``node_id`` as the main port; none: the node's first free one.
    allocation_id: uuid.UUID | None = None
    image: str | None = Field(None, max_length=255)
    memory_mib: int
    swap_mib: int = Field(0, ge=0, le=32768)
    cpu_percent: int
    disk_mib: int
    pids_limit: int = Field(512, ge=32, le=32768)
    variables: dict[str, str] = Field(default_factory=dict, max_length=64)

    @model_validator(mode="after")
    def _placement(self) -> ServerCreate:
        if (self.node_id is None) == (self.location_id is None):
            raise ValueError("give exactly one of node_id (a node) or location_id (any node there)")
        if self.allocation_id is not None and self.node_id is None:
            raise ValueError("allocation_id names a port of a node: give node_id with it")
        return self


class ServerRename(Input):
    name: str = Field(min_length=1, max_length=64)


class PowerIn(Input):
    action: Literal["start", "stop", "restart", "kill"]


class CommandIn(Input):
    # The node's own rule for a console line (no C0 or C1 control character), stricter length.
    command: str = Field(min_length=1, max_length=1024, pattern=CONSOLE_TEXT)


class LimitsOut(Output):
    memory_mib: int
    swap_mib: int
    cpu_percent: int
    disk_mib: int
    pids_limit: int


class ServerAllocationOut(Output):
    ip: str
    port: int


class AllocationOut(Output):
    """One of a server's ports as its users manage it."""

    id: uuid.UUID
    ip: str
    port: int
    notes: str | None
    # The main port: the game's SERVER_PORT (the one chosen, else the lowest).
    primary: bool


class AllocationUpdate(Input):
    """What a server's users (``allocations.update``) change of one of its ports: the notes
    (null clears them), and which port is the main one (only ``true``: make another one
    main to change it)."""

    notes: str | None = Field(None, max_length=255)
    primary: bool | None = None

    @field_validator("primary")
    @classmethod
    def _primary_only_set(cls, value: bool | None) -> bool | None:
        if value is False:
            raise ValueError("can only be set to true: make another port the main one")
        return value


class ServerOut(Output):
    id: uuid.UUID
    name: str
    owner_id: uuid.UUID
    node_id: uuid.UUID
    blueprint_id: uuid.UUID
    image: str
    state: str
    suspended: bool
    limits: LimitsOut
    allocations: list[ServerAllocationOut]
    created_at: dt.datetime
    # What the caller may do here: ["*"] for owners and admins, else their permission nodes.
    permissions: list[str]


InstallState = Literal["none", "installing", "installed", "install_failed"]


class InstallOut(Output):
    """The server's last install as its node reported it (``none``: no install recorded)."""

    state: InstallState
    exit_code: int | None
    seconds: float | None
    # Why it failed, in the agent's words (timed out, out of memory, image not pulled …).
    reason: str | None
    # The installer's last lines (at most 100, each cut at 1024 characters); null for
    # callers without ``console.read``: scripts may print secrets.
    last_lines: list[str] | None


class ServerDetail(ServerOut):
    """One server, with its last install (``GET /api/v1/servers/{id}``)."""

    install: InstallOut


class VariableOut(Output):
    env: str
    name: str
    description: str
    value: str
    editable: bool


class StartupOut(Output):
    command: list[str]
    image: str
    images: list[str]
    variables: list[VariableOut]


class StartupUpdate(Input):
    variables: dict[str, str] = Field(default_factory=dict, max_length=64)
    image: str | None = Field(None, max_length=255)


class SubuserCreate(Input):
    email: str = Field(min_length=3, max_length=254)
    permissions: list[str] = Field(max_length=64)


class SubuserUpdate(Input):
    permissions: list[str] = Field(max_length=64)


class SubuserOut(Output):
    id: uuid.UUID
    user_id: uuid.UUID
    email: str
    permissions: list[str]
    created_at: dt.datetime


class SubuserList(Output):
    data: list[SubuserOut]
