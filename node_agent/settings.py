"""Agent settings, read from a TOML file and validated before the agent listens.

Example (``stellar-cp node add`` prints one for the node)::

    node_id = "0b5c…"
    issuer = "stellar-cp"
    listen_host = "127.0.0.1"
    listen_port = 8080
    data_dir = "/var/lib/stellar-agent"

    [trusted_keys]
    "ed25519-3f2a…" = "<base64url public key>"

Disk limits (DESIGN.md "Containers (agent)") come from ``storage_backend``:

- ``"btrfs"``: one btrfs pool at ``storage_pool_dir``, either a partition the host already
  mounts there or a sparse image file (``storage_pool_image``, ``storage_pool_size_mib``) that
  the agent creates, loop-mounts and mounts again after a reboot; one subvolume with a qgroup
  limit per server.
- ``"ext4"``: one loop-mounted ext4 image per server (cannot grow online).
- ``"directory"``: plain directories whose usage is only polled every
  ``storage_poll_seconds``; refused in production.
- ``"auto"`` (default): btrfs when the agent runs as root and btrfs works, else directory,
  with a warning.

In development the agent unmounts at shutdown what it mounted itself; in production the
pool stays mounted (running games keep using it). Games keep running across agent restarts,
except under ``stop_servers_on_exit`` (development only; ``stellar-cp dev`` sets it): then the
agent stops every game and installer before it exits, so the pool is released too, and
brings back the games that were running at its next start.

Game and install containers get Docker's default seccomp profile (the copy shipped with the
agent, or the file ``seccomp_base_profile`` names), with ``ioctl`` unable to create btrfs
subvolumes and without io_uring (as Docker 25's default profile). A production agent with the
btrfs backend refuses to start if that file cannot be used; otherwise the agent warns and
leaves Docker's default profile in place.

Game containers reach the internet and DNS but not loopback, link-local (cloud metadata),
private, CGNAT or reserved addresses, nor this node except the ports games publish: an
nftables table the agent keeps (``node_agent/egress/``). ``egress_allow`` lists more networks
games may reach, e.g. ``["10.20.0.0/16", "10.30.0.5 tcp/5432", "fd12:3456::/48"]``;
``egress_dns`` the resolvers their DNS queries may go to (default: the host's, as Docker
forwards to them). A production agent refuses to start if it cannot load the table.

Images are pulled only from the registries ``image_registries`` lists (default: Docker Hub,
``ghcr.io``, ``quay.io``, ``registry.gitlab.com``): dockerd pulls from the host's own network,
so an egg's ``127.0.0.1:PORT/x`` would reach what the egress policy keeps games from
(``node_agent/docker/registries.py``). An image already on the node is used whatever its name.

TLS (``tls_cert_file`` and ``tls_key_file``, made by ``stellar-agent tls generate``): the agent
serves HTTPS with its own self-signed certificate, which the control plane pins by fingerprint.
Without them it serves plain HTTP, and only on a loopback ``listen_host``.
"""

from __future__ import annotations

import ipaddress
import stat
import tomllib
import uuid
from pathlib import Path
from typing import Final, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from node_agent.console.limits import ConsoleLimits
from node_agent.docker.network import AGENT_NETWORK, BRIDGE_NAME_PATTERN
from node_agent.docker.registries import DEFAULT_REGISTRIES, normalise_registry
from node_agent.docker.seccomp import DOCKER_DEFAULT_PROFILE
from node_agent.egress.policy import EgressAllowance
from node_agent.files.limits import FileLimits
from node_agent.sftp.limits import SftpLimits
from shared.command_keys import KeyFormatError, check_kid, parse_public_key
from shared.protocol import MAX_LEEWAY_SECONDS

StorageBackendName = Literal["auto", "btrfs", "ext4", "directory"]
# mkfs.btrfs refuses smaller devices (with its default DUP metadata).
MIN_POOL_SIZE_MIB: Final = 128


class ConfigError(Exception):
    """The configuration cannot be used; ``problems`` lists every reason at once."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class AgentSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    node_id: uuid.UUID
    issuer: str = Field(default="stellar-cp", min_length=1, max_length=128)
    environment: Literal["development", "production"] = "development"
    listen_host: str = "127.0.0.1"
    listen_port: int = Field(default=8080, ge=1, le=65535)
    data_dir: Path
    trusted_keys: dict[str, str] = Field(min_length=1)
    token_leeway_seconds: int = Field(default=5, ge=0, le=MAX_LEEWAY_SECONDS)
    facts_refresh_seconds: float = Field(default=30.0, gt=0, le=3600)
    docker_url: str = "unix:///var/run/docker.sock"
    # The agent's Docker network and the Linux bridge of the same name (so at most 15
    # characters, and nothing an nftables rule would have to quote or escape).
    docker_network: str = Field(default=AGENT_NETWORK, pattern=BRIDGE_NAME_PATTERN)
    # Networks games may reach besides the internet: "NETWORK" or "NETWORK tcp|udp/PORT[-PORT]".
    egress_allow: tuple[str, ...] = ()
    # Resolvers games' DNS may reach; None: the host's, read as Docker reads them.
    egress_dns: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...] | None = None
    # The registries blueprints' images may be pulled from ("host" or "host:port"); an
    # image already on the node runs whatever its registry (node_agent/docker/registries.py).
    image_registries: tuple[str, ...] = DEFAULT_REGISTRIES
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    # A game that crashes again within this many seconds of its last crash is not restarted.
    crash_loop_window_seconds: float = Field(default=60.0, ge=0, le=86_400)
    # How often each running server's resources are sampled for the control plane's history.
    stats_sample_seconds: float = Field(default=5.0, ge=0.2, le=300)
    console: ConsoleLimits = Field(default_factory=ConsoleLimits)
    files: FileLimits = Field(default_factory=FileLimits)
    storage_backend: StorageBackendName = "auto"
    storage_pool_dir: Path | None = None
    storage_pool_image: Path | None = None
    storage_pool_size_mib: int = Field(default=10 * 1024, ge=MIN_POOL_SIZE_MIB)
    storage_poll_seconds: float = Field(default=10.0, gt=0, le=3600)
    # Docker's default seccomp profile, which the agent extends for game containers
    # (node_agent/docker/seccomp.py); the agent ships a copy (node_agent/docker/data/).
    seccomp_base_profile: Path = DOCKER_DEFAULT_PROFILE
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    # The dev stack's agent leaves nothing running behind it (node_agent/servers/registry.py).
    stop_servers_on_exit: bool = False
    # SFTP into servers' files (docs/sftp.md): off unless a port is set (players reach it,
    # so the firewall opens it to everyone, unlike listen_port).
    sftp_port: int | None = Field(default=None, ge=1, le=65535)
    sftp_listen_host: str = "127.0.0.1"
    sftp: SftpLimits = Field(default_factory=SftpLimits)

    @field_validator("trusted_keys")
    @classmethod
    def _keys_parse(cls, keys: dict[str, str]) -> dict[str, str]:
        problems = []
        for kid, text in keys.items():
            try:
                check_kid(kid)
                parse_public_key(text)
            except KeyFormatError as err:
                problems.append(f"trusted key {kid!r}: {err}")
        if problems:
            raise ValueError("; ".join(problems))
        return keys

    @field_validator("egress_allow")
    @classmethod
    def _allowances_parse(cls, entries: tuple[str, ...]) -> tuple[str, ...]:
        problems = []
        for entry in entries:
            try:
                EgressAllowance.parse(entry)
            except ValueError as err:
                problems.append(str(err))
        if problems:
            raise ValueError("; ".join(problems))
        return entries

    @field_validator("image_registries")
    @classmethod
    def _registries_parse(cls, entries: tuple[str, ...]) -> tuple[str, ...]:
        problems, registries = [], []
        for entry in entries:
            try:
                registries.append(normalise_registry(entry))
            except ValueError as err:
                problems.append(str(err))
        if problems:
            raise ValueError("; ".join(problems))
        return tuple(registries)

    @field_validator("egress_dns")
    @classmethod
    def _resolvers_usable(
        cls, servers: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...] | None
    ) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...] | None:
        for server in servers or ():
            if server.is_loopback or server.is_unspecified or server.is_multicast:
                raise ValueError(
                    f"{server} cannot be a resolver for games: their queries leave through "
                    "the bridge (a loopback resolver is used by dockerd itself, not listed here)"
                )
            if isinstance(server, ipaddress.IPv6Address) and server.scope_id:
                raise ValueError(f"{server}: give the resolver without a zone (%interface)")
        return servers

    @model_validator(mode="after")
    def _production_rules(self) -> AgentSettings:
        if self.environment == "production" and self.listen_host in {"0.0.0.0", "::"}:  # noqa: S104
            raise ValueError(
                "production agents listen on the address the firewall opens to the control "
                "plane, not on every interface"
            )
        if self.environment == "production" and self.stop_servers_on_exit:
            raise ValueError(
                "stop_servers_on_exit is for development (`stellar-cp dev`): production "
                "agents keep games running across their restarts"
            )
        if self.environment == "production" and self.storage_backend == "directory":
            raise ValueError(
                "production agents need disk limits the kernel enforces: storage_backend "
                '"directory" only polls usage; use "btrfs", "ext4" or "auto"'
            )
        return self

    @model_validator(mode="after")
    def _tls_rules(self) -> AgentSettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file go together: set both or neither")
        if self.tls_key_file is None:
            if not is_loopback(self.listen_host):
                raise ValueError(
                    f"listen_host {self.listen_host!r} is not a loopback address, so the agent "
                    "must serve HTTPS: set tls_cert_file and tls_key_file (create them with "
                    "`stellar-agent tls generate --host HOST --out-dir /etc/stellar-agent/tls`); "
                    "plain HTTP is only for development on 127.0.0.1 or ::1"
                )
            return self
        problems = [_tls_file_problem(self.tls_cert_file, "tls_cert_file", secret=False)]
        problems.append(_tls_file_problem(self.tls_key_file, "tls_key_file", secret=True))
        found = [problem for problem in problems if problem]
        if found:
            raise ValueError("; ".join(found))
        return self

    @property
    def serves_tls(self) -> bool:
        return self.tls_cert_file is not None and self.tls_key_file is not None

    @property
    def egress_allowances(self) -> tuple[EgressAllowance, ...]:
        return tuple(EgressAllowance.parse(entry) for entry in self.egress_allow)

    def public_keys(self) -> dict[str, Ed25519PublicKey]:
        return {kid: parse_public_key(text) for kid, text in self.trusted_keys.items()}

    @property
    def replay_log(self) -> Path:
        return self.data_dir / "replay-cache.log"

    @property
    def pool_dir(self) -> Path:
        """Where the btrfs pool is (or gets) mounted."""
        return self.storage_pool_dir or self.data_dir / "pool"

    @property
    def pool_image(self) -> Path:
        """The image file the agent loop-mounts when nothing is mounted at ``pool_dir``."""
        return self.storage_pool_image or self.data_dir / "pool.img"


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) can only be reached from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _tls_file_problem(path: Path | None, name: str, *, secret: bool) -> str | None:
    if path is None:
        return None
    try:
        mode = path.stat().st_mode
    except OSError as err:
        return f"{name} {path} cannot be read: {err.strerror or err}"
    if not stat.S_ISREG(mode):
        return f"{name} {path} is not a regular file"
    if secret and mode & 0o077:
        return f"{name} {path} must not be readable by group or others (chmod 600 {path})"
    return None


def load_settings(path: Path) -> AgentSettings:
    """Read and validate the TOML config; every problem is reported in one ConfigError."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise ConfigError([f"config file {path} does not exist"]) from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError([f"config file {path} is not valid TOML: {err}"]) from err
    try:
        return AgentSettings.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(
            [
                f"{'.'.join(str(p) for p in e['loc']) or 'config'}: {e['msg']}"
                for e in err.errors(include_url=False)
            ]
        ) from err
