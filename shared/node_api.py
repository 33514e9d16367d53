"""Schemas of the node agent's HTTP API: the agent answers with them, the control plane reads."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from shared.server_spec import ServerState
from shared.sftp_api import SftpInfo


class NodeFacts(BaseModel):
    """What a host has, refreshed by the agent in the background."""

    model_config = ConfigDict(frozen=True)

    cpu_count: int
    memory_bytes: int
    disk_total_bytes: int
    disk_free_bytes: int
    docker_version: str | None
    docker_error: str | None = None
    refreshed_at: float
    # How server disk limits hold: "btrfs"/"ext4" are enforced by the kernel, "directory"
    # only polled (None: an agent from before disk backends).
    storage_backend: Literal["btrfs", "ext4", "directory"] | None = None
    storage_enforced: bool | None = None
    # Whether game containers run with the seccomp profile that stops them creating a btrfs
    # subvolume (whose qgroup would have no limit) inside their volume.
    nested_subvolumes_blocked: bool | None = None


class SystemInfo(BaseModel):
    """``GET /api/v1/system``."""

    node_id: uuid.UUID
    agent_version: str
    facts: NodeFacts
    # The node's SFTP listener and host key (None: SFTP is off on this node).
    sftp: SftpInfo | None = None
    # The version of the SFTP access table the node holds (0: none yet; None: an agent from
    # before versions). The control plane pushes again while it is behind.
    sftp_access_version: int | None = None


class Health(BaseModel):
    """``GET /healthz``: reveals nothing but liveness."""

    status: str = "ok"


# --- Node events: ``GET /api/v1/events`` (WebSocket, act ``node.events``, sub ``node``) -------
# Each text frame is one JSON object; ``type`` says which of the models below it is.


# The largest number an event of a stream may have (18 digits: the control plane keeps it).
MAX_SEQ: Final = 10**18 - 1


class Numbered(BaseModel):
    """An event the agent keeps a while after publishing it (``REPLAYED``): ``seq`` is its
    number in the agent's stream, for a follower that resumes after a gap
    (``GET /api/v1/events?after=<epoch>:<seq>``). Audit-worthy events only: states are read
    again on every reconnect, samples are not worth a second look."""

    seq: int | None = Field(default=None, ge=1, le=MAX_SEQ)


class StateEvent(BaseModel):
    """A server's state changed."""

    model_config = ConfigDict(frozen=True)

    type: Literal["state"] = "state"
    server: uuid.UUID
    state: ServerState


class CrashEvent(Numbered):
    """A game exited without being asked to; ``restarting`` says whether the agent restarts it."""

    model_config = ConfigDict(frozen=True)

    type: Literal["crash"] = "crash"
    server: uuid.UUID
    exit_code: int | None
    oom_killed: bool
    restarting: bool
    reason: str


class InstallEvent(BaseModel):
    """A server's install script finished."""

    model_config = ConfigDict(frozen=True)

    type: Literal["install"] = "install"
    server: uuid.UUID
    success: bool
    exit_code: int | None
    # How long the installer ran, and the last lines it printed (what a user needs to see
    # why it failed); None from an agent before these were reported.
    duration_seconds: float | None = None
    last_lines: list[str] | None = None
    # Why it failed when the script's exit code does not say (timed out, image missing…).
    reason: str | None = None


class ImagePullEvent(BaseModel):
    """Progress of an image pull (``status`` is ``pulling``, ``done`` or ``failed``)."""

    model_config = ConfigDict(frozen=True)

    type: Literal["image_pull"] = "image_pull"
    image: str
    status: Literal["pulling", "done", "failed"]
    current_bytes: int | None = None
    total_bytes: int | None = None
    detail: str | None = None


class DiskFullEvent(Numbered):
    """A server's volume reached its limit (reported by the storage backend)."""

    model_config = ConfigDict(frozen=True)

    type: Literal["disk_full"] = "disk_full"
    server: uuid.UUID
    used_bytes: int | None = None
    limit_bytes: int | None = None


class BackupEvent(Numbered):
    """A backup (``operation`` create) or a restore from one changed status."""

    model_config = ConfigDict(frozen=True)

    type: Literal["backup"] = "backup"
    server: uuid.UUID
    backup: uuid.UUID
    operation: Literal["create", "restore"] = "create"
    status: Literal["running", "completed", "failed"]
    reason: str | None = None
    # Once it ended: how long it ran, and (a created backup) the size of its file.
    duration_seconds: float | None = None
    size_bytes: int | None = None


class StatsEvent(BaseModel):
    """A resource sample of one server (every few seconds while it runs, see
    ``node_agent/sampler.py``); the control plane keeps them downsampled."""

    model_config = ConfigDict(frozen=True)

    type: Literal["stats"] = "stats"
    server: uuid.UUID
    # Seconds since the epoch on the agent's clock.
    sampled_at: float
    cpu_percent: float
    memory_bytes: int
    # Counters since the container started (a restart sets them back to zero).
    network_rx_bytes: int
    network_tx_bytes: int
    disk_used_bytes: int | None = None
    disk_limit_bytes: int | None = None


class SftpLoginEvent(Numbered):
    """An SFTP login to a known account of one of this node's servers, or a failed one
    (failures naming no known account are only logged and counted on the agent)."""

    model_config = ConfigDict(frozen=True)

    type: Literal["sftp_login"] = "sftp_login"
    server: uuid.UUID
    user: uuid.UUID
    success: bool
    method: Literal["publickey", "password"]
    address: str


class SftpFailuresEvent(Numbered):
    """Failed SFTP login attempts from one source (an IPv4 address or an IPv6 /64; ``*``:
    sources past the agent's table) over the last ``seconds``, by reason. Every failure is
    counted here, those naming an unknown account too; one event per source and window."""

    model_config = ConfigDict(frozen=True)

    type: Literal["sftp_failures"] = "sftp_failures"
    source: str = Field(max_length=64)
    count: int = Field(ge=1)
    reasons: dict[Annotated[str, Field(max_length=64)], int] = Field(max_length=16)
    seconds: float


class EventsDropped(BaseModel):
    """Sent before the next event when this subscriber fell behind and ``count`` were lost."""

    model_config = ConfigDict(frozen=True)

    type: Literal["dropped"] = "dropped"
    count: int


class StreamStart(BaseModel):
    """The first frame of every event stream: the agent's stream (``epoch``: new at each start
    of the agent) and the number of the last event published before this subscriber came.
    Numbered events up to ``seq`` that follow it are replays of what it asked to resume
    after; those after it are new."""

    model_config = ConfigDict(frozen=True)

    type: Literal["stream"] = "stream"
    epoch: str = Field(pattern=r"^[0-9a-f]{16}$")
    seq: int = Field(ge=0, le=MAX_SEQ)


# The kinds of events the agent keeps for a follower that resumes (``Numbered``).
REPLAYED: Final = frozenset({"crash", "disk_full", "backup", "sftp_login", "sftp_failures"})


NodeEvent = Annotated[
    StateEvent
    | CrashEvent
    | InstallEvent
    | ImagePullEvent
    | DiskFullEvent
    | BackupEvent
    | SftpLoginEvent
    | SftpFailuresEvent
    | StatsEvent
    | EventsDropped
    | StreamStart,
    Field(discriminator="type"),
]
NODE_EVENT: TypeAdapter[NodeEvent] = TypeAdapter(NodeEvent)


# --- Console: ``GET /api/v1/servers/{server_id}/console`` (WebSocket, act ``server.console``) --
# Frames are JSON ``{"event": ..., "args": [...]}`` in both directions, in the spirit of Wings.

ConsoleInboundEvent = Literal["send command", "send logs", "send stats", "set state", "auth"]
ConsoleOutboundEvent = Literal[
    "console output",
    "install output",
    "status",
    "stats",
    "token expiring",
    "auth success",
    "error",
]


# The ``console output`` line the agent sends in place of the lines its throttle dropped.
THROTTLE_NOTICE: Final = "[stellar] output throttled: {dropped} lines dropped"


class ConsoleInbound(BaseModel):
    """What the control plane may send on a console socket.

    ``send command`` [line] types a line; ``send logs`` [] replays the recent lines;
    ``send stats`` [] asks for a ``stats`` event; ``set state`` [start|stop|restart|kill]
    is a power action; ``auth`` [token] renews the socket with a fresh command token for
    ``GET`` of the same path.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    event: ConsoleInboundEvent
    args: list[str] = Field(default_factory=list, max_length=4)


class ConsoleOutbound(BaseModel):
    """What the agent sends on a console socket.

    ``console output`` [line]; ``install output`` [line] (the installer's, while the server
    installs, and the agent's line saying how it ended); ``status`` [state]; ``stats``
    [ServerStats as an object];
    ``token expiring`` []; ``auth success`` []; ``error`` [message].
    """

    model_config = ConfigDict(frozen=True)

    event: ConsoleOutboundEvent
    args: list[Any] = Field(default_factory=list)


class DiskResize(BaseModel):
    """``PATCH /api/v1/servers/{uuid}/disk``: the server's new disk limit."""

    model_config = ConfigDict(extra="forbid")

    disk_mib: int = Field(ge=64, le=64 * 1024 * 1024)


class ServerDisk(BaseModel):
    """A server's disk as the node sees it now."""

    used_bytes: int
    total_bytes: int
    backend: Literal["btrfs", "ext4", "directory"]
    enforced: bool
