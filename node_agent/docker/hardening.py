"""The exact Docker create configuration of every container the agent runs.

One function per kind of container (:func:`game_container_config`,
:func:`install_container_config`), both built on :func:`_host_config`, so that a rule of
DESIGN.md "Containers (agent)" is written once: non-root user, all capabilities dropped,
no-new-privileges, Docker's default seccomp profile without nested btrfs subvolumes (see
``seccomp.py``), read-only root with a small noexec ``/tmp``, memory/swap/CPU/PIDs limits,
no core dumps, a capped json-file log, the agent's own bridge network, only the server's
volume mounted, and ports published only on the server's allocations.

Every path the image declares as a ``VOLUME`` is covered by a tmpfs like ``/tmp``: Docker
would give it an anonymous volume on the host's own disk, writable despite the read-only root
and outside the server's disk limit.

The install container differs only where docs/templates-installers.md says why: it may run as
root with :data:`INSTALL_ROOT_CAPABILITIES`, sees the volume where the blueprint's script
expects it (``/mnt/server`` for eggs), has no stdin, and its ``/tmp`` allows programs and is
bounded by the server's memory instead of 64 MiB.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from node_agent.docker.seccomp import SeccompProfile
from shared.server_spec import InstallSpec, ServerSpec, StopSignal

MANAGED_LABEL: Final = "io.stellarstack.managed"
SERVER_LABEL: Final = "io.stellarstack.server"
ROLE_LABEL: Final = "io.stellarstack.role"
# SHA-256 of the rest of the create body: a container made from any other body (an older
# agent's weaker hardening, a changed spec, one made by hand) is rebuilt before it starts.
CONFIG_LABEL: Final = "io.stellarstack.config"
GAME_USER: Final = "1000:1000"
ROOT_USER: Final = "0:0"
# What a root installer may still do: own and move files it creates, drop to another user.
INSTALL_ROOT_CAPABILITIES: Final = ("CHOWN", "DAC_OVERRIDE", "FOWNER", "SETUID", "SETGID")
VOLUME_TARGET: Final = "/home/container"
TMPFS_OPTIONS: Final = "rw,noexec,nosuid,size=64m"
LOG_CONFIG: Final = {"Type": "json-file", "Config": {"max-size": "10m", "max-file": "3"}}
MIB: Final = 1024 * 1024
NANO_CPUS_PER_PERCENT: Final = 10_000_000
NO_NEW_PRIVILEGES: Final = "no-new-privileges:true"
# No core dumps, soft or hard: a crash would hand up to the server's memory to the host's
# core_pattern (systemd-coredump, apport: root, outside the container's limits and disk
# quota), and the game could raise a soft limit of 0 to Docker's hard one and crash at will.
ULIMITS: Final = ({"Name": "core", "Soft": 0, "Hard": 0},)


@dataclass(frozen=True)
class ContainerPlacement:
    """Where on this node a server's containers go: network, volume, and the game's user."""

    network: str
    volume_path: Path
    user: str = GAME_USER

    def __post_init__(self) -> None:
        uid, _, gid = self.user.partition(":")
        if not (uid.isdigit() and gid.isdigit()) or int(uid) == 0 or int(gid) == 0:
            raise ValueError("the game user must be a numeric uid:gid, never root")
        if not self.volume_path.is_absolute():
            raise ValueError("the volume path must be absolute")
        if ":" in str(self.volume_path) or "," in str(self.volume_path):
            # A colon would split the bind "source:target:mode" somewhere else.
            raise ValueError("the volume path must not contain ':' or ','")


def game_container_name(server_id: uuid.UUID) -> str:
    """The name of a server's game container."""
    return f"stellar-{server_id}"


def install_container_name(server_id: uuid.UUID) -> str:
    """The name of a server's (short-lived) install container."""
    return f"stellar-{server_id}-install"


def server_labels(server_id: uuid.UUID, role: str) -> dict[str, str]:
    """Labels that let the agent find its own containers, and never touch anyone else's."""
    return {MANAGED_LABEL: "true", SERVER_LABEL: str(server_id), ROLE_LABEL: role}


def _environment(spec: ServerSpec, home: str = VOLUME_TARGET) -> list[str]:
    variables = dict(spec.environment)
    variables.update(
        HOME=home,
        USER="container",
        SERVER_UUID=str(spec.uuid),
        SERVER_MEMORY=str(spec.memory_mib),
    )
    if spec.startup_template:
        # Placeholders unfilled: an egg image's entrypoint turns {{X}} into ${X} and its shell
        # reads the value from the variable X, so no value is ever part of the command text.
        variables["STARTUP"] = spec.startup_template
    primary = spec.primary_allocation
    if primary is not None:
        variables.update(SERVER_IP=primary.ip, SERVER_PORT=str(primary.port))
    return [f"{name}={value}" for name, value in sorted(variables.items())]


def _port_bindings(spec: ServerSpec) -> dict[str, list[dict[str, str]]]:
    bindings: dict[str, list[dict[str, str]]] = {}
    for allocation in spec.allocations:
        for protocol in allocation.protocols:
            bindings.setdefault(f"{allocation.port}/{protocol}", []).append(
                {"HostIp": allocation.ip, "HostPort": str(allocation.port)}
            )
    return bindings


def security_options(seccomp: SeccompProfile | None) -> list[str]:
    """``SecurityOpt``: no-new-privileges, and the agent's seccomp profile when it has one.

    Without a profile Docker applies its default one.
    """
    options = [NO_NEW_PRIVILEGES]
    if seccomp is not None:
        options.append(seccomp.security_opt)
    return options


def _tmpfs(
    options: str, image_volumes: tuple[str, ...], volume_target: str, user: str
) -> dict[str, str]:
    """``/tmp`` and every ``VOLUME`` of the image but the server's own, as small tmpfs mounts.

    An image's volume belongs to the game's user (Docker keeps the image directory's mode,
    not its owner): the image meant the game to write there.
    """
    uid, _, gid = user.partition(":")
    tmp = "/tmp"  # noqa: S108 (inside the container)
    mounts = {tmp: options}
    # Already mounted: the server's volume, /tmp (and "/" is no mount point of its own).
    taken = {posixpath.normpath(volume_target), tmp, "/"}
    for declared in image_volumes:
        path = posixpath.normpath(declared)
        if path not in taken:
            mounts[path] = f"{options},uid={uid},gid={gid}"
    return mounts


def _host_config(
    spec: ServerSpec,
    placement: ContainerPlacement,
    *,
    capabilities: tuple[str, ...],
    port_bindings: dict[str, list[dict[str, str]]],
    seccomp: SeccompProfile | None,
    image_volumes: tuple[str, ...],
    volume_target: str = VOLUME_TARGET,
    tmpfs_options: str = TMPFS_OPTIONS,
) -> dict[str, Any]:
    return {
        "Binds": [f"{placement.volume_path}:{volume_target}:rw"],
        "PortBindings": port_bindings,
        "PublishAllPorts": False,
        "NetworkMode": placement.network,
        "Privileged": False,
        "CapDrop": ["ALL"],
        "CapAdd": list(capabilities),
        "SecurityOpt": security_options(seccomp),
        "ReadonlyRootfs": spec.read_only_root,
        "Tmpfs": _tmpfs(tmpfs_options, image_volumes, volume_target, placement.user),
        "Memory": spec.memory_mib * MIB,
        "MemorySwap": (spec.memory_mib + spec.swap_mib) * MIB,
        "NanoCpus": spec.cpu_percent * NANO_CPUS_PER_PERCENT,
        "PidsLimit": spec.pids_limit,
        "Ulimits": [dict(limit) for limit in ULIMITS],
        "LogConfig": LOG_CONFIG,
        # Private namespaces, spelled out so that no daemon default can widen them.
        "IpcMode": "private",
        "PidMode": "",
        "UTSMode": "",
        "UsernsMode": "",
        "Devices": [],
        "RestartPolicy": {"Name": "no"},
        "AutoRemove": False,
    }


def _base_config(spec: ServerSpec, image: str, role: str, user: str) -> dict[str, Any]:
    return {
        "Image": image,
        "User": user,
        "Env": _environment(spec),
        "WorkingDir": VOLUME_TARGET,
        "Labels": server_labels(spec.uuid, role),
        # stdin stays open for console commands; nothing is bound to a terminal.
        "OpenStdin": True,
        "AttachStdin": True,
        "StdinOnce": False,
        "AttachStdout": True,
        "AttachStderr": True,
        "Tty": False,
    }


def game_container_config(
    spec: ServerSpec,
    placement: ContainerPlacement,
    seccomp: SeccompProfile | None = None,
    image_volumes: tuple[str, ...] = (),
) -> dict[str, Any]:
    """The create body of the container that runs the game (``seccomp``: see security_options;
    ``image_volumes``: the paths the image declares as ``VOLUME``).

    Its command is the spec's ``startup`` arguments, or with ``image_command`` the image's own
    (no ``Cmd``: an egg image's entrypoint runs ``STARTUP``). ``StopSignal`` is the spec's
    stop signal, for a ``docker stop`` by hand; the agent sends it itself (``runtime.stop``).
    """
    bindings = _port_bindings(spec)
    config = _base_config(spec, spec.image, "game", placement.user)
    if spec.startup and not spec.image_command:
        config["Cmd"] = list(spec.startup)
    config["ExposedPorts"] = {port: {} for port in bindings}
    config["StopTimeout"] = spec.stop_timeout_seconds
    if isinstance(spec.stop, StopSignal):
        config["StopSignal"] = spec.stop.value
    config["HostConfig"] = _host_config(
        spec,
        placement,
        capabilities=(),
        port_bindings=bindings,
        seccomp=seccomp,
        image_volumes=image_volumes,
    )
    config["Labels"][CONFIG_LABEL] = config_fingerprint(config)
    return config


def config_fingerprint(config: dict[str, Any]) -> str:
    """The SHA-256 of a create body, leaving out the label that carries it."""
    labels = {k: v for k, v in config.get("Labels", {}).items() if k != CONFIG_LABEL}
    canonical = json.dumps({**config, "Labels": labels}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def install_container_config(
    spec: ServerSpec,
    install: InstallSpec,
    placement: ContainerPlacement,
    seccomp: SeccompProfile | None = None,
    image_volumes: tuple[str, ...] = (),
) -> dict[str, Any]:
    """The create body of the one-off container that runs the blueprint's install script.

    It publishes no ports. With ``needs_root`` it runs as root with only
    :data:`INSTALL_ROOT_CAPABILITIES`; it is otherwise as limited as the game container:
    same seccomp profile, no-new-privileges, memory/swap/CPU/PIDs limits, network (so the
    same egress policy), and its root is read-only unless the blueprint turned that off
    for its game (``read_only_root``) or for its installer (``install.writable_root``: the
    container's own copy of its image, removed with it, where eggs' scripts install
    packages). The volume is mounted at ``install.volume_path``,
    which is also ``HOME`` and the working directory. Its stdin is closed, so a script that
    asks a question reads end-of-file instead of waiting until the time limit.
    """
    user = ROOT_USER if install.needs_root else placement.user
    capabilities = INSTALL_ROOT_CAPABILITIES if install.needs_root else ()
    config = _base_config(spec, install.image, "install", user)
    config["Env"] = _environment(spec, home=install.volume_path)
    config["WorkingDir"] = install.volume_path
    config.update(OpenStdin=False, AttachStdin=False)
    config["Entrypoint"] = [install.entrypoint]
    config["Cmd"] = ["-c", install.script]
    config["HostConfig"] = _host_config(
        spec,
        placement,
        capabilities=capabilities,
        port_bindings={},
        seccomp=seccomp,
        image_volumes=image_volumes,
        volume_target=install.volume_path,
        tmpfs_options=install_tmpfs_options(spec),
    )
    if install.writable_root:
        config["HostConfig"]["ReadonlyRootfs"] = False
    return config


def install_tmpfs_options(spec: ServerSpec) -> str:
    """The installer's ``/tmp``: as big as the server's memory, programs allowed.

    Egg scripts download archives and installers to ``/tmp`` and run them there; noexec
    would protect nothing (the script may run programs from the volume anyway), and the
    pages are charged to the container's memory limit, which bounds the size as well.
    """
    return f"rw,nosuid,nodev,size={spec.memory_mib}m"
