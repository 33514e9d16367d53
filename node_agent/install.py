"""``stellar-agent install`` / ``uninstall``: set a node up from its enrolment bundle.

The bundle is the TOML that ``stellar-cp node add`` prints, optionally with an
``[enrolment]`` table the installer consumes (it never reaches the agent's config)::

    [enrolment]
    control_plane = ["198.51.100.7"]   # addresses the firewall opens the agent port to
    game_ports = "25565-25665"
    tls_host = "node1.example.com"     # certificate SAN (default: listen_host)

Install is idempotent: it checks Docker and the btrfs tools, creates ``/etc/stellar-agent``
and ``/var/lib/stellar-agent`` (0700), keeps an existing TLS key (so the pinned fingerprint
stays valid), writes the config in production form (TLS on, btrfs pool), creates the pool
image, installs the agent unit and the pool's mount unit, enables them when systemd runs,
and prints the fingerprint to pin and the firewall rules to apply. ``--prefix`` relocates
every path (files written *and* the paths inside them), which is how the tests install into
a temporary directory and then run the installed agent.

Uninstall removes the units and the games' egress table (``inet stellar_egress``), and keeps
the config, TLS key and server data unless ``--purge``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from node_agent import firewall
from node_agent.docker.network import AGENT_NETWORK
from node_agent.egress.nft import EgressError, load_script_now
from node_agent.egress.policy import render_removal, table_name
from node_agent.settings import ConfigError, load_settings
from node_agent.tls import TlsSetupError, generate_identity

AGENT_UNIT: Final = "stellar-agent.service"
DEFAULT_AGENT_BIN: Final = "/opt/stellar-agent/bin/stellar-agent"
DEFAULT_CONFIG_FILE: Final = "/etc/stellar-agent/agent.toml"
DEFAULT_DATA_DIR: Final = "/var/lib/stellar-agent"
DEFAULT_POOL_SIZE_MIB: Final = 10 * 1024
POOL_OPTIONS: Final = "nosuid,nodev,noatime"
_BARE_KEY: Final = re.compile(r"^[A-Za-z0-9_-]+$")
_SYSTEMCTL_TIMEOUT: Final = 120


class InstallError(Exception):
    """The node cannot be (un)installed as asked; the message says why and what to do."""


@dataclass(frozen=True)
class Layout:
    """Every path the installer touches, under ``prefix`` (``/`` on a real node)."""

    prefix: Path

    def _at(self, path: str) -> Path:
        return self.prefix / path.lstrip("/")

    @property
    def config_dir(self) -> Path:
        return self._at("/etc/stellar-agent")

    @property
    def config_file(self) -> Path:
        return self._at(DEFAULT_CONFIG_FILE)

    @property
    def tls_dir(self) -> Path:
        return self.config_dir / "tls"

    @property
    def data_dir(self) -> Path:
        return self._at(DEFAULT_DATA_DIR)

    @property
    def pool_dir(self) -> Path:
        return self.data_dir / "pool"

    @property
    def pool_image(self) -> Path:
        return self.data_dir / "pool.img"

    @property
    def unit_dir(self) -> Path:
        return self._at("/etc/systemd/system")

    @property
    def share_dir(self) -> Path:
        return self._at("/usr/share/stellar-agent/deploy")

    @property
    def mount_unit(self) -> str:
        return systemd_escape_path(self.pool_dir) + ".mount"

    @property
    def is_live_system(self) -> bool:
        return self.prefix == Path("/")


def systemd_escape_path(path: Path) -> str:
    """``systemd-escape --path``: the unit name of a mount point, without the suffix."""
    text = str(path).strip("/")
    if not text:
        return "-"
    escaped = []
    for index, char in enumerate(text):
        if char == "/":
            escaped.append("-")
        elif char.isascii() and (char.isalnum() or char in ":_" or (char == "." and index)):
            escaped.append(char)
        else:
            escaped.extend(f"\\x{byte:02x}" for byte in char.encode("utf-8"))
    return "".join(escaped)


# --- small helpers -----------------------------------------------------------------------


def _say(message: str = "") -> None:
    print(message, flush=True)


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key)


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    raise InstallError(f"cannot write {value!r} into the agent's TOML config")


def dump_toml(data: Mapping[str, object], header: str) -> str:
    """TOML for the agent's config: top-level values, then one level of tables."""
    lines = [header]
    tables = {key: value for key, value in data.items() if isinstance(value, dict)}
    for key, value in data.items():
        if key not in tables:
            lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
    for name, table in tables.items():
        lines.extend(["", f"[{_toml_key(name)}]"])
        for key, value in table.items():
            lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def _write_if_changed(path: Path, text: str, mode: int) -> bool:
    """Atomically replace ``path`` with ``text`` (mode ``mode``); False if it was already so."""
    try:
        if path.read_text(encoding="utf-8") == text and (path.stat().st_mode & 0o7777) == mode:
            return False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return True


def _ensure_dir(path: Path, mode: int) -> None:
    path.mkdir(parents=True, exist_ok=True, mode=mode)
    os.chmod(path, mode)


def _run(*argv: str, timeout: float = _SYSTEMCTL_TIMEOUT) -> subprocess.CompletedProcess[str]:
    try:
        # argv lists of fixed tools and paths, never a shell.
        return subprocess.run(  # noqa: S603
            list(argv), capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        raise InstallError(f"`{' '.join(argv)}` could not run: {err}") from err


def _check(result: subprocess.CompletedProcess[str]) -> None:
    if result.returncode != 0:
        complaint = (result.stderr or result.stdout).strip().splitlines()
        raise InstallError(
            f"`{' '.join(result.args)}` failed: {complaint[-1] if complaint else 'no output'}"
        )


def systemd_running() -> bool:
    """Whether systemd is PID 1 here (what sd_booted() checks)."""
    return Path("/run/systemd/system").is_dir()


def _pid1_name() -> str:
    try:
        return Path("/proc/1/comm").read_text(encoding="utf-8").strip()
    except OSError:
        return "unknown"


def _default_agent_bin() -> str:
    beside_python = Path(sys.executable).parent / "stellar-agent"
    if beside_python.exists():
        return str(beside_python)
    return shutil.which("stellar-agent") or DEFAULT_AGENT_BIN


# --- checks ------------------------------------------------------------------------------


def check_docker(docker_url: str, timeout: float = 5.0) -> str:
    """Docker's version string, via ``GET /version`` on its socket; InstallError if none."""
    hint = (
        "install and start Docker first (Debian/Ubuntu: apt-get install docker.io; "
        "or Docker's own docker-ce packages), then run the installer again"
    )
    if not docker_url.startswith("unix://"):
        raise InstallError(f"the installer checks Docker on a unix socket, not {docker_url!r}")
    path = docker_url.removeprefix("unix://")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(path)
            sock.sendall(b"GET /version HTTP/1.0\r\nHost: docker\r\n\r\n")
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
    except OSError as err:
        raise InstallError(f"Docker does not answer on {path}: {err}; {hint}") from err
    head, _, body = answer.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.") or b" 200 " not in head.split(b"\r\n", 1)[0] + b" ":
        raise InstallError(f"Docker on {path} answered {head[:60]!r}; {hint}")
    try:
        version = json.loads(body).get("Version", "unknown")
    except (ValueError, AttributeError):
        version = "unknown"
    return str(version)


def _require_tools(names: tuple[str, ...], package: str) -> None:
    missing = [name for name in names if shutil.which(name) is None]
    if missing:
        raise InstallError(
            f"missing {', '.join(missing)}: apt-get install {package}, then run the installer again"
        )


# --- the bundle --------------------------------------------------------------------------


@dataclass(frozen=True)
class Bundle:
    """The enrolment bundle: the agent's settings and the installer's own ``[enrolment]``."""

    settings: dict[str, Any]
    control_plane: list[str]
    game_ports: str | None
    tls_host: str | None

    @classmethod
    def parse(cls, text: str, source: str) -> Bundle:
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise InstallError(f"the bundle {source} is not valid TOML: {err}") from err
        enrolment = raw.pop("enrolment", {})
        if not isinstance(enrolment, dict):
            raise InstallError("[enrolment] in the bundle must be a table")
        unknown = set(enrolment) - {"control_plane", "game_ports", "tls_host"}
        if unknown:
            raise InstallError(f"[enrolment] has unknown keys: {', '.join(sorted(unknown))}")
        missing = [key for key in ("node_id", "trusted_keys") if key not in raw]
        if missing:
            raise InstallError(
                f"the bundle {source} lacks {', '.join(missing)}: use the whole text "
                "`stellar-cp node add` printed"
            )
        addresses = enrolment.get("control_plane", [])
        if isinstance(addresses, str):
            addresses = [addresses]
        return cls(raw, list(addresses), enrolment.get("game_ports"), enrolment.get("tls_host"))


def _read_bundle(path: str) -> Bundle:
    if path == "-":
        return Bundle.parse(sys.stdin.read(), "on stdin")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise InstallError(f"cannot read the bundle {path}: {err}") from err
    return Bundle.parse(text, path)


# --- install -----------------------------------------------------------------------------


@dataclass(frozen=True)
class InstallOptions:
    bundle: Bundle
    layout: Layout
    deploy_dir: Path
    agent_bin: str
    pool_size_mib: int = DEFAULT_POOL_SIZE_MIB
    pool_device: str | None = None
    environment: str = "production"
    check_docker: bool = True
    control_plane: tuple[str, ...] = ()
    game_ports: str | None = None
    ssh_port: int = 22


def agent_config(options: InstallOptions, cert_file: Path, key_file: Path) -> dict[str, Any]:
    """The bundle's settings in production form, with this node's paths."""
    layout = options.layout
    config = dict(options.bundle.settings)
    config.update(
        environment=options.environment,
        data_dir=str(layout.data_dir),
        tls_cert_file=str(cert_file),
        tls_key_file=str(key_file),
        storage_backend="btrfs",
        storage_pool_dir=str(layout.pool_dir),
        storage_pool_image=str(layout.pool_image),
    )
    # Tables last, as TOML needs them after the plain keys.
    return dict(sorted(config.items(), key=lambda item: isinstance(item[1], dict)))


def render_units(options: InstallOptions) -> dict[str, str]:
    """The agent's unit and its pool's mount unit, with this node's paths, by file name."""
    layout = options.layout
    systemd_dir = options.deploy_dir / "systemd"
    try:
        agent = (systemd_dir / AGENT_UNIT).read_text(encoding="utf-8")
        mount = (systemd_dir / "stellar-agent-pool.mount.in").read_text(encoding="utf-8")
    except OSError as err:
        raise InstallError(f"cannot read the unit templates in {systemd_dir}: {err}") from err
    agent = (
        agent.replace(DEFAULT_AGENT_BIN, options.agent_bin)
        .replace(DEFAULT_CONFIG_FILE, str(layout.config_file))
        .replace(DEFAULT_DATA_DIR, str(layout.data_dir))
    )
    if options.pool_device:
        source, mount_options = options.pool_device, POOL_OPTIONS
    else:
        source, mount_options = str(layout.pool_image), f"loop,{POOL_OPTIONS}"
    mount = firewall.render(
        mount,
        {"POOL_SOURCE": source, "POOL_DIR": str(layout.pool_dir), "POOL_OPTIONS": mount_options},
    )
    return {AGENT_UNIT: agent, layout.mount_unit: mount}


def _create_pool_image(image: Path, size_mib: int) -> bool:
    if image.exists():
        return False
    descriptor = os.open(image, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.ftruncate(descriptor, size_mib * 1024 * 1024)
    finally:
        os.close(descriptor)
    result = _run("mkfs.btrfs", "-q", "-L", "stellar-pool", str(image))
    if result.returncode != 0:
        image.unlink(missing_ok=True)
        _check(result)
    return True


def _enable_units(layout: Layout, units: list[str], restart: bool) -> None:
    systemctl = ("systemctl", *units)
    if not layout.is_live_system:
        _say(f"(installed under {layout.prefix}: systemctl not called)")
        return
    if not systemd_running():
        _say(
            f"systemd is not running as PID 1 here (PID 1 is {_pid1_name()!r}): skipped "
            f"`systemctl daemon-reload` and `systemctl enable --now {' '.join(units)}`. "
            "Run them once systemd runs."
        )
        return
    _check(_run("systemctl", "daemon-reload"))
    _check(_run(systemctl[0], "enable", "--now", *systemctl[1:]))
    if restart:
        _check(_run("systemctl", "restart", AGENT_UNIT))
    _say(f"enabled and started: {', '.join(units)}")


def install(options: InstallOptions) -> str:
    """Install or update the agent; return the certificate fingerprint to pin."""
    layout = options.layout
    if layout.is_live_system and os.geteuid() != 0:
        raise InstallError("run the installer as root (it writes /etc and /var/lib)")
    docker_url = str(options.bundle.settings.get("docker_url", "unix:///var/run/docker.sock"))
    if options.check_docker:
        _say(f"docker: {check_docker(docker_url)}")
    _require_tools(("btrfs",) if options.pool_device else ("btrfs", "mkfs.btrfs"), "btrfs-progs")

    for directory in (layout.config_dir, layout.tls_dir, layout.data_dir, layout.pool_dir):
        _ensure_dir(directory, 0o700)
    host = options.bundle.tls_host or str(options.bundle.settings.get("listen_host", "127.0.0.1"))
    try:
        identity = generate_identity(host, layout.tls_dir)
    except TlsSetupError as err:
        raise InstallError(str(err)) from err

    header = "# stellar-agent config, written by `stellar-agent install` from the bundle"
    config_text = dump_toml(agent_config(options, identity.cert_file, identity.key_file), header)
    config_changed = _write_if_changed(layout.config_file, config_text, 0o600)
    _say(f"config: {layout.config_file} ({'written' if config_changed else 'unchanged'})")
    try:
        settings = load_settings(layout.config_file)
    except ConfigError as err:
        raise InstallError(
            "the resulting config is not usable:\n  - " + "\n  - ".join(err.problems)
        ) from err

    if options.pool_device is None and _create_pool_image(layout.pool_image, options.pool_size_mib):
        _say(f"pool: created {layout.pool_image} ({options.pool_size_mib} MiB, btrfs)")
    units = render_units(options)
    units_changed = False
    for name, text in units.items():
        units_changed |= _write_if_changed(layout.unit_dir / name, text, 0o644)
    _say(f"units: {', '.join(str(layout.unit_dir / name) for name in units)}")
    _copy_templates(options.deploy_dir, layout.share_dir)
    _enable_units(layout, [layout.mount_unit, AGENT_UNIT], config_changed or units_changed)

    _say("")
    _say(f"TLS fingerprint (SHA-256, pin it for node {settings.node_id} at the control plane):")
    _say(f"  {identity.fingerprint}")
    _say("")
    _say(_firewall_advice(options, settings.listen_port))
    return identity.fingerprint


def _copy_templates(deploy_dir: Path, share_dir: Path) -> None:
    # So that `stellar-agent firewall` works later on the node without the source tree.
    for sub in ("firewall", "systemd"):
        source = deploy_dir / sub
        if source.resolve() != (share_dir / sub).resolve():
            shutil.copytree(source, share_dir / sub, dirs_exist_ok=True)


def _firewall_advice(options: InstallOptions, agent_port: int) -> str:
    addresses = list(options.control_plane) or options.bundle.control_plane
    game_ports = options.game_ports or options.bundle.game_ports or firewall.DEFAULT_GAME_PORTS
    if not addresses:
        return (
            "firewall: give the control plane's address to render the rules:\n"
            f"  stellar-agent firewall --control-plane CP_ADDRESS --agent-port {agent_port} "
            f"--game-ports {game_ports} > /etc/nftables.d/stellar-node.nft"
        )
    policy = firewall.FirewallPolicy(
        control_plane=firewall.FirewallPolicy.parse_addresses(addresses),
        agent_port=agent_port,
        game_ports=firewall.PortRange.parse(game_ports),
        ssh_port=options.ssh_port,
    )
    rules = firewall.render_firewall(policy, "nft", options.deploy_dir)
    return (
        "firewall: apply these rules (save them, then `nft -f FILE`; include the file from\n"
        "/etc/nftables.conf to keep them over reboots; `--format ufw` prints ufw commands):\n"
        + rules
    )


# --- uninstall ---------------------------------------------------------------------------


def _mounted(path: Path) -> bool:
    try:
        lines = Path("/proc/self/mountinfo").read_text(encoding="utf-8").splitlines()
    except OSError:
        return False
    target = os.path.realpath(path)
    return any(len(f := line.split()) > 4 and f[4] == target for line in lines)


def remove_egress_table(config_file: Path) -> str:
    """Remove the egress table of the bridge ``config_file`` names; what was removed.

    The agent must be stopped first, or it loads the table again when a game starts or stops.
    """
    try:
        raw = tomllib.loads(config_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raw = {}
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise InstallError(f"cannot read {config_file} to find the agent's bridge: {err}") from err
    bridge = str(raw.get("docker_network", AGENT_NETWORK))
    try:
        table = table_name(bridge)
        load_script_now(render_removal(bridge))
    except (ValueError, EgressError) as err:
        raise InstallError(f"the games' egress table was not removed: {err}") from err
    return f"inet {table}"


def uninstall(layout: Layout, *, purge: bool) -> None:
    """Remove the units and the egress table; with ``purge`` also the config, TLS key and all
    server data."""
    if layout.is_live_system and os.geteuid() != 0:
        raise InstallError("run the uninstaller as root")
    units = [AGENT_UNIT, layout.mount_unit]
    if layout.is_live_system and systemd_running():
        _run("systemctl", "disable", "--now", *units)
    elif layout.is_live_system:
        _say(f"systemd is not running as PID 1 (PID 1 is {_pid1_name()!r}): no unit stopped")
    for name in units:
        (layout.unit_dir / name).unlink(missing_ok=True)
    if layout.is_live_system and systemd_running():
        _run("systemctl", "daemon-reload")
    _say(f"removed units: {', '.join(units)}")
    if layout.is_live_system:
        # nftables is the host's, not the prefix's: a test install under --prefix keeps out.
        try:
            table = remove_egress_table(layout.config_file)
        except InstallError as err:
            _say(f"{err}; remove it by hand: nft list tables, then nft delete table inet NAME")
        else:
            _say(f"removed the egress table {table}: games still running can reach everything")
    if not purge:
        _say(
            f"kept: {layout.config_dir} (config, TLS key: the pinned fingerprint stays valid) "
            f"and {layout.data_dir} (server data); `--purge` removes them"
        )
        return
    if _mounted(layout.pool_dir):
        _check(_run("umount", str(layout.pool_dir)))
        attached = _run(
            "losetup", "--associated", str(layout.pool_image), "--output", "NAME", "--noheadings"
        )
        for device in attached.stdout.split():
            _run("losetup", "--detach", device)
    shutil.rmtree(layout.data_dir, ignore_errors=True)
    shutil.rmtree(layout.config_dir, ignore_errors=True)
    _say(f"purged: {layout.data_dir} and {layout.config_dir}")


# --- command line ------------------------------------------------------------------------


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("install", help="install this node's agent from an enrolment bundle")
    parser.add_argument(
        "--bundle", required=True, help="the TOML `stellar-cp node add` printed (- for stdin)"
    )
    parser.add_argument("--prefix", type=Path, default=Path("/"), help="install under this root")
    parser.add_argument("--deploy-dir", type=Path, default=None, help="unit and firewall templates")
    parser.add_argument(
        "--agent-bin", default=None, help="the stellar-agent executable for the unit"
    )
    parser.add_argument("--pool-size-mib", type=int, default=DEFAULT_POOL_SIZE_MIB)
    parser.add_argument(
        "--pool-device", default=None, help="a btrfs partition to use instead of an image"
    )
    parser.add_argument(
        "--environment", choices=("production", "development"), default="production"
    )
    parser.add_argument("--skip-docker-check", action="store_true")
    parser.add_argument(
        "--tls-host", default=None, help="the certificate's SAN (default: listen_host)"
    )
    firewall.add_policy_arguments(parser, agent_port_required=False, game_ports_default=None)
    parser.set_defaults(handler=_cmd_install)

    remove = sub.add_parser("uninstall", help="remove the agent's units (data kept unless --purge)")
    remove.add_argument("--prefix", type=Path, default=Path("/"))
    remove.add_argument(
        "--purge", action="store_true", help="also delete config, TLS key, server data"
    )
    remove.set_defaults(handler=_cmd_uninstall)


def _cmd_install(args: argparse.Namespace) -> int:
    try:
        bundle = _read_bundle(args.bundle)
        if args.tls_host:
            bundle = Bundle(bundle.settings, bundle.control_plane, bundle.game_ports, args.tls_host)
        options = InstallOptions(
            bundle=bundle,
            layout=Layout(args.prefix.resolve()),
            deploy_dir=args.deploy_dir or firewall.default_deploy_dir(),
            agent_bin=args.agent_bin or _default_agent_bin(),
            pool_size_mib=args.pool_size_mib,
            pool_device=args.pool_device,
            environment=args.environment,
            check_docker=not args.skip_docker_check,
            control_plane=tuple(args.control_plane),
            game_ports=args.game_ports,
            ssh_port=args.ssh_port,
        )
        install(options)
    except (InstallError, firewall.FirewallError) as err:
        print(f"stellar-agent install: {err}", file=sys.stderr)
        return 1
    return 0


def _cmd_uninstall(args: argparse.Namespace) -> int:
    try:
        uninstall(Layout(args.prefix.resolve()), purge=args.purge)
    except InstallError as err:
        print(f"stellar-agent uninstall: {err}", file=sys.stderr)
        return 1
    return 0
