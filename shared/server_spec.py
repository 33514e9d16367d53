"""What a game server is, as the control plane tells a node: image, command, limits, ports.

:class:`ServerSpec` is the body of the agent's create command. Every field is bounded, so a
spec that validates can be turned into a container without further checks; the container
itself is shaped by ``node_agent/docker/hardening.py``, not by anything in here.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
import uuid
from typing import Annotated, Final, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from shared.console_markers import check_marker
from shared.patterns import check_condition

MAX_ARGS: Final = 256
MAX_ARG_LENGTH: Final = 4096
MAX_ENV_VARS: Final = 128
MAX_ENV_VALUE_LENGTH: Final = 8192
MAX_INSTALL_SCRIPT_LENGTH: Final = 64 * 1024
MAX_ALLOCATIONS: Final = 64
MIN_PORT: Final = 1024
MAX_DENYLIST_PATTERNS: Final = 256
MAX_CONFIG_FILES: Final = 32
MAX_CONFIG_REPLACEMENTS: Final = 256
MAX_DONE_MARKERS: Final = 16
DEFAULT_INSTALL_TIMEOUT_SECONDS: Final = 3600
# How long a game has to exit after its stop command or signal, before it is killed.
DEFAULT_STOP_TIMEOUT_SECONDS: Final = 30
MAX_STOP_TIMEOUT_SECONDS: Final = 600

ENV_NAME: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
# Set by the agent itself (from the spec or the container), so a blueprint cannot override them.
RESERVED_ENV_NAMES: Final = frozenset(
    {"HOME", "USER", "PATH", "STARTUP", "SERVER_UUID", "SERVER_IP", "SERVER_PORT", "SERVER_MEMORY"}
)
RESERVED_ENV_PREFIXES: Final = ("STELLAR_", "LD_")
# A Docker image reference: [host[:port]/]path[:tag][@sha256:digest], lowercase path.
IMAGE_REFERENCE: Final = (
    r"^(?:(?:[a-zA-Z0-9-]+(?:\.[a-zA-Z0-9-]+)+(?::[0-9]{1,5})?"
    r"|[a-zA-Z0-9-]+:[0-9]{1,5}|localhost)/)?"
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?$"
)
StopSignalName = Literal["SIGTERM", "SIGINT", "SIGQUIT", "SIGHUP", "SIGUSR1", "SIGUSR2", "SIGKILL"]

ImageReference = Annotated[str, Field(min_length=1, max_length=255, pattern=IMAGE_REFERENCE)]
Argument = Annotated[str, Field(max_length=MAX_ARG_LENGTH)]
DenyPattern = Annotated[str, Field(min_length=1, max_length=512, pattern=r"^[^\x00\n\r]+$")]


def _no_nul(value: str, what: str) -> str:
    if "\x00" in value:
        raise ValueError(f"{what} must not contain NUL characters")
    return value


def _as_arguments(value: object) -> object:
    """A string is split like a shell would (quotes honoured), but never run by one."""
    if isinstance(value, str):
        try:
            return shlex.split(value)
        except ValueError as err:
            raise ValueError(f"cannot split the command: {err}") from err
    return value


class Allocation(BaseModel):
    """One address and port a server's game is published on."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ip: str = Field(max_length=45)
    port: int = Field(ge=MIN_PORT, le=65535)
    protocols: tuple[Literal["tcp", "udp"], ...] = Field(default=("tcp", "udp"), min_length=1)

    @field_validator("ip")
    @classmethod
    def _ip_literal(cls, value: str) -> str:
        # A literal only: a hostname would be resolved by dockerd at publish time.
        try:
            return str(ipaddress.ip_address(value))
        except ValueError as err:
            raise ValueError("must be an IPv4 or IPv6 address literal") from err

    @field_validator("protocols")
    @classmethod
    def _unique_protocols(
        cls, value: tuple[Literal["tcp", "udp"], ...]
    ) -> tuple[Literal["tcp", "udp"], ...]:
        if len(set(value)) != len(value):
            raise ValueError("protocols must not repeat")
        return value


# No C0/C1 control character (a line break would smuggle a second command).
CONSOLE_TEXT: Final = r"^[^\x00-\x1f\x7f\u0080-\u009f]+$"


# A done marker: text a console line contains, or ``regex:<RE2 expression>`` (one that does
# not compile is refused here, so a node never gets it); see shared/console_markers.py.
ConsoleMarker = Annotated[
    str, Field(min_length=1, max_length=256, pattern=CONSOLE_TEXT), AfterValidator(check_marker)
]


class StopCommand(BaseModel):
    """Stop by typing ``value`` on the game's console."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["command"]
    value: str = Field(min_length=1, max_length=256, pattern=CONSOLE_TEXT)


class StopSignal(BaseModel):
    """Stop by sending a signal to the game's main process."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["signal"]
    value: StopSignalName = "SIGTERM"


ConfigParserName = Literal["properties", "json", "yaml", "ini", "xml", "file", "toml"]
# A path inside the server's volume, relative to it (the agent resolves it through the
# confined file layer, so ".." or a symlink can never lead outside).
VolumePath = Annotated[str, Field(min_length=1, max_length=1024, pattern=r"^[^\x00-\x1f\x7f]+$")]


class ConfigReplacement(BaseModel):
    """One key of a game's configuration file set before each start.

    ``match`` is a dotted key path (``[n]`` indexes, ``*`` wildcards) for the structured
    parsers, the line prefix for ``file``. ``value`` may hold placeholders
    (``{{server.allocations.default.port}}``, ``{{server.environment.X}}`` …, see
    docs/templates.md). With ``if_value`` the key is replaced only when its current value
    equals it, or, written ``regex:<expression>``, matches it (``$1`` … in ``value`` then
    refer to its groups).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    match: str = Field(min_length=1, max_length=512, pattern=r"^[^\x00-\x1f\x7f]+$")
    value: str = Field(max_length=MAX_ARG_LENGTH, pattern=r"^[^\x00]*$")
    # A ``regex:`` condition that does not compile, or whose repeats would blow up when it
    # does (shared/patterns.py), is refused here: a node never meets it at a start.
    if_value: Annotated[
        str | None,
        Field(min_length=1, max_length=1024, pattern=r"^[^\x00]+$"),
        AfterValidator(check_condition),
    ] = None


class ConfigFile(BaseModel):
    """A game's configuration file and the keys the agent sets in it before each start."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: VolumePath
    parser: ConfigParserName
    replace: tuple[ConfigReplacement, ...] = Field(min_length=1, max_length=MAX_CONFIG_REPLACEMENTS)


class InstallSpec(BaseModel):
    """A one-off container that prepares the server's files before its first start.

    The script is passed to ``entrypoint -c`` (no host file is mounted to carry it); only
    the server's volume is mounted, at ``/home/container``, as in the game container.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    image: ImageReference
    entrypoint: str = Field(default="/bin/sh", min_length=1, max_length=255, pattern=r"^/\S+$")
    script: str = Field(min_length=1, max_length=MAX_INSTALL_SCRIPT_LENGTH)
    needs_root: bool = False
    # Where the volume is mounted in the install container: eggs' scripts write to
    # /mnt/server; the game container always sees it at /home/container.
    volume_path: Literal["/home/container", "/mnt/server"] = "/home/container"
    # The installer's own root (a throwaway copy of its image, removed with it) is writable:
    # eggs' scripts install packages there. The game's root is ``read_only_root`` either way.
    writable_root: bool = False
    # Killed, and the install failed, after this long.
    timeout_seconds: int = Field(default=DEFAULT_INSTALL_TIMEOUT_SECONDS, ge=1, le=6 * 3600)

    @field_validator("script")
    @classmethod
    def _script_text(cls, value: str) -> str:
        return _no_nul(value, "the install script")


class ServerSpec(BaseModel):
    """Everything a node needs to run one game server."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    uuid: uuid.UUID
    image: ImageReference
    startup: tuple[Argument, ...] = Field(default=(), max_length=MAX_ARGS)
    environment: dict[str, str] = Field(default_factory=dict, max_length=MAX_ENV_VARS)
    memory_mib: int = Field(ge=32, le=1024 * 1024)
    swap_mib: int = Field(default=0, ge=0, le=1024 * 1024)
    cpu_percent: int = Field(default=100, ge=5, le=100 * 1024)
    disk_mib: int = Field(ge=64, le=64 * 1024 * 1024)
    pids_limit: int = Field(default=512, ge=16, le=65536)
    allocations: tuple[Allocation, ...] = Field(default=(), max_length=MAX_ALLOCATIONS)
    stop: StopCommand | StopSignal = Field(
        default_factory=lambda: StopSignal(type="signal"), discriminator="type"
    )
    stop_timeout_seconds: int = Field(
        default=DEFAULT_STOP_TIMEOUT_SECONDS, ge=1, le=MAX_STOP_TIMEOUT_SECONDS
    )
    read_only_root: bool = True
    install: InstallSpec | None = None
    # gitignore-style patterns of paths the file API never touches (node_agent/files/).
    file_denylist: tuple[DenyPattern, ...] = Field(default=(), max_length=MAX_DENYLIST_PATTERNS)
    # Configuration files set before each start (node_agent/configs/).
    config_files: tuple[ConfigFile, ...] = Field(default=(), max_length=MAX_CONFIG_FILES)
    # The game is "running" once its console prints one of these (``regex:`` for an
    # expression); with none, as soon as its container runs.
    startup_done: tuple[ConsoleMarker, ...] = Field(default=(), max_length=MAX_DONE_MARKERS)
    # The blueprint's startup template, placeholders unfilled, given to the game as
    # ``STARTUP`` (images made for eggs read it). Values reach the game only as variables.
    startup_template: str = Field(default="", max_length=MAX_ARG_LENGTH, pattern=r"^[^\x00]*$")
    # True: no ``Cmd`` is set and the image's own command runs (it reads ``STARTUP``).
    image_command: bool = False
    # The control plane numbers every spec it sends for a server, each above the last
    # (``control_plane/services/servers/spec_changes.py``); a node keeps the highest it was
    # given, so a spec that arrives late (sent before another, or by a replica that froze
    # while sending) never replaces a newer one. 0: from before specs were numbered.
    revision: int = Field(default=0, ge=0)

    @field_validator("startup", mode="before")
    @classmethod
    def _split_startup(cls, value: object) -> object:
        return _as_arguments(value)

    @field_validator("startup")
    @classmethod
    def _startup_text(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for argument in value:
            _no_nul(argument, "a startup argument")
        return value

    @field_validator("environment")
    @classmethod
    def _environment_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if not ENV_NAME.fullmatch(name):
                raise ValueError(f"{name[:64]!r} is not a valid variable name")
            if name in RESERVED_ENV_NAMES or name.startswith(RESERVED_ENV_PREFIXES):
                raise ValueError(f"{name} is set by the agent and cannot be given")
            if len(text) > MAX_ENV_VALUE_LENGTH:
                raise ValueError(f"{name} is longer than {MAX_ENV_VALUE_LENGTH} characters")
            _no_nul(text, f"{name}")
        return value

    @model_validator(mode="after")
    def _distinct_allocations(self) -> ServerSpec:
        seen: set[tuple[str, int]] = set()
        for allocation in self.allocations:
            key = (allocation.ip, allocation.port)
            if key in seen:
                raise ValueError(f"allocation {allocation.ip}:{allocation.port} is listed twice")
            seen.add(key)
        return self

    def is_older_than(self, kept: ServerSpec) -> bool:
        """Sent before ``kept`` was: a node that has ``kept`` keeps it (an equal revision is
        the same spec sent again, taken as it comes)."""
        return self.revision < kept.revision

    @property
    def primary_allocation(self) -> Allocation | None:
        """The allocation the game listens on (``SERVER_IP``/``SERVER_PORT``), if any."""
        return self.allocations[0] if self.allocations else None


# --- What the agent answers about a server -------------------------------------------------

InstallPhase = Literal["none", "installing", "installed", "failed"]
PowerActionName = Literal["start", "stop", "restart", "kill"]
ServerState = Literal["offline", "installing", "starting", "running", "stopping", "crashed"]
# What the user last asked for; the agent restores it after a host reboot.
DesiredPower = Literal["running", "stopped"]
MAX_CONSOLE_COMMAND_LENGTH: Final = 2048
MAX_LOG_LINES: Final = 1000


class PowerAction(BaseModel):
    """Body of ``POST /api/v1/servers/{server_id}/power``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    action: PowerActionName


class ContainerStatus(BaseModel):
    """The game container as Docker last reported it."""

    model_config = ConfigDict(frozen=True)

    status: str
    running: bool
    exit_code: int | None
    oom_killed: bool
    started_at: str | None
    finished_at: str | None


class InstallOutcome(BaseModel):
    """How a server's last install ended, as its ``InstallEvent`` said (kept by the agent).

    Reported in :class:`ServerStatus` too, so that a control plane that missed the event
    (it was not following the node then) still learns it when it reads the server again.
    """

    model_config = ConfigDict(frozen=True)

    success: bool
    exit_code: int | None
    # None when unknown (the agent restarted while the installer ran).
    duration_seconds: float | None
    last_lines: tuple[str, ...] = ()
    reason: str | None = None


class ServerStatus(BaseModel):
    """``GET /api/v1/servers/{server_id}`` and the answer to every change of a server."""

    model_config = ConfigDict(frozen=True)

    uuid: uuid.UUID
    state: ServerState
    desired_power: DesiredPower
    install: InstallPhase
    install_exit_code: int | None
    stopping: bool
    container: ContainerStatus | None
    # The disk limit the server has now (changed online by ``PATCH .../disk``).
    disk_mib: int | None = None
    # A spec update (``PUT .../spec``) the game container gets at its next start or restart.
    spec_pending: bool = False
    # The revision of the spec the node keeps (``ServerSpec.revision``).
    spec_revision: int = 0
    # The last finished install (None: none yet, or an agent from before this was kept).
    last_install: InstallOutcome | None = None


class ConsoleCommand(BaseModel):
    """Body of ``POST /api/v1/servers/{server_id}/command``: one line for the game's stdin."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    command: str = Field(min_length=1, max_length=MAX_CONSOLE_COMMAND_LENGTH, pattern=CONSOLE_TEXT)


class ConsoleLines(BaseModel):
    """``GET /api/v1/servers/{server_id}/logs?lines=N``: the most recent console lines."""

    model_config = ConfigDict(frozen=True)

    lines: list[str]


class ServerStats(BaseModel):
    """``GET /api/v1/servers/{server_id}/stats``: resource use of the game container now.

    ``cpu_percent`` is relative to one core (200 = two cores busy). A server that is not
    running reports zeros and ``uptime_seconds`` None.
    """

    model_config = ConfigDict(frozen=True)

    state: ServerState
    cpu_percent: float
    memory_bytes: int
    memory_limit_bytes: int
    network_rx_bytes: int
    network_tx_bytes: int
    pids: int
    uptime_seconds: float | None
    sampled_at: float
