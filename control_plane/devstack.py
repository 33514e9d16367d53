"""``stellar-cp dev``: the whole system on one machine, for trying it out and for development.

First run: generates the local secrets and keys (mode 0600, in the data directory, never in the
repository), migrates a SQLite database, registers the local node, writes its agent config and
creates a first admin. Every run saves the "Freeciv (demo)" blueprint if it is missing
(``stellar-cp demo create`` then makes a game of it, see ``control_plane/demo.py``). Every
run: starts the control plane and the agent as child processes, waits until both answer, prints
how to log in (to the panel, and over SFTP to the local agent's listener on 127.0.0.1, with
its host key's fingerprint), and stops both cleanly on Ctrl-C or SIGTERM.

Unlike a production agent, the local one leaves nothing running behind it: its config sets
``stop_servers_on_exit``, so at exit it stops its game containers and then unmounts its
storage pool and detaches the pool's loop device. The next run starts the games that were
running again.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import asyncssh
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select

from control_plane.cli_ops import create_user, migrate, render_agent_config
from control_plane.db.engine import create_engine, session_factory
from control_plane.db.models import Node
from control_plane.db.session import transaction
from control_plane.demo import DemoUnavailable, ensure_demo_blueprint
from control_plane.security.command_signing import CommandSigner
from control_plane.services.nodes import add_node
from control_plane.settings import load_settings
from shared.command_keys import write_private_key

# The agent's host key file in its data directory (node_agent/sftp/hostkey.py).
HOST_KEY_NAME = "sftp_host_ed25519_key"

NODE_NAME = "local"
ADMIN_EMAIL = "admin@stellar.local"
DOCKER_SOCKET = Path("/var/run/docker.sock")
CONTROL_PLANE_STOP_SECONDS = 15
# The agent first stops every game, each within its stop_timeout_seconds (at most 600, all at
# once), then releases its pool.
AGENT_STOP_SECONDS = 660


def _write_secret_file(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(path, 0o600)


def _read_env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        name, sep, value = line.partition("=")
        if sep and not line.lstrip().startswith("#"):
            values[name.strip()] = value.strip()
    return values


def prepare(data_dir: Path, *, port: int, agent_port: int) -> dict[str, str]:
    """Create what is missing (secrets, keys, env file); return the control plane's environment."""
    data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
    key_file = data_dir / "command-signing.key"
    if not key_file.exists():
        write_private_key(key_file, Ed25519PrivateKey.generate())
    env_file = data_dir / "control-plane.env"
    existing = _read_env_file(env_file) if env_file.exists() else {}
    values = {
        "STELLAR_ENV": "development",
        "STELLAR_DATABASE_URL": f"sqlite:///{(data_dir / 'stellar.db').resolve()}",
        "STELLAR_AUTH_SECRET": secrets.token_urlsafe(48),
        "STELLAR_ENCRYPTION_KEYS": f"k1:{secrets.token_hex(32)}",
        "STELLAR_SIGNING_KEY_FILE": str(key_file.resolve()),
        **existing,
        "STELLAR_HOST": "127.0.0.1",
        "STELLAR_PORT": str(port),
        # localhost, not an IP: browsers refuse passkeys on an IP origin.
        "STELLAR_PUBLIC_URL": f"http://localhost:{port}",
    }
    _write_secret_file(
        env_file,
        "# written by `stellar-cp dev`; secrets: keep this file private (mode 0600)\n"
        + "".join(f"{k}={v}\n" for k, v in values.items()),
    )
    return values


async def _register_node(
    env: dict[str, str], data_dir: Path, agent_port: int, sftp_port: int
) -> Path:
    settings = load_settings(env)
    await migrate(settings)
    signer = CommandSigner.from_file(Path(env["STELLAR_SIGNING_KEY_FILE"]), issuer=settings.issuer)
    url = f"http://127.0.0.1:{agent_port}"
    engine = create_engine(settings.database_url or "")
    try:
        async with transaction(session_factory(engine)) as session:
            node = await session.scalar(select(Node).where(Node.name == NODE_NAME))
            if node is None:
                node = await add_node(session, name=NODE_NAME, url=url)
            node.url = url
            config = render_agent_config(
                node,
                signer,
                data_dir=(data_dir / "agent").resolve(),
                more={"stop_servers_on_exit": True}
                | ({"sftp_port": sftp_port, "sftp_listen_host": "127.0.0.1"} if sftp_port else {}),
            )
    finally:
        await engine.dispose()
    config_file = data_dir / "agent.toml"
    _write_secret_file(config_file, config)
    return config_file


async def _save_demo_blueprint(env: dict[str, str]) -> str | None:
    """Save the Freeciv demo's blueprint if missing; a warning if it cannot be."""
    engine = create_engine(load_settings(env).database_url or "")
    try:
        async with transaction(session_factory(engine)) as session:
            await ensure_demo_blueprint(session)
    except DemoUnavailable as err:
        return f"the Freeciv demo is not available: {err}"
    finally:
        await engine.dispose()
    return None


def _wait_healthy(
    url: str, process: subprocess.Popen[bytes], name: str, timeout: float = 30
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with code {process.returncode} while starting")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 (loopback URL we built)
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{name} did not answer on {url} within {timeout:.0f} s")


def _stop(control_plane: subprocess.Popen[bytes], agent: subprocess.Popen[bytes]) -> bool:
    """SIGTERM both, wait for each, SIGKILL one that overstays; whether the agent stopped itself."""
    for process in (control_plane, agent):
        if process.poll() is None:
            process.terminate()
    agent_done = True
    for process, seconds in (
        (control_plane, CONTROL_PLANE_STOP_SECONDS),
        (agent, AGENT_STOP_SECONDS),
    ):
        try:
            process.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            agent_done = process is not agent
    return agent_done


def _docker_warning() -> str | None:
    if DOCKER_SOCKET.is_socket():
        return None
    return (
        "Docker engine not found (no /var/run/docker.sock). The agent starts, but cannot run game "
        "servers. Install and start it: `sudo apt-get install docker.io && sudo systemctl start "
        "docker` (or run `make run` as root, which does it for you)."
    )


def run_devstack(data_dir: Path, *, port: int, agent_port: int, sftp_port: int = 0) -> int:
    env_values = prepare(data_dir, port=port, agent_port=agent_port)
    config_file = asyncio.run(_register_node(env_values, data_dir, agent_port, sftp_port))
    demo_warning = asyncio.run(_save_demo_blueprint(env_values))
    admin_password = secrets.token_urlsafe(18)
    created = asyncio.run(
        create_user(
            load_settings(env_values),
            email=ADMIN_EMAIL,
            password=admin_password,
            is_admin=True,
            only_if_no_admin=True,
        )
    )
    child_env = {**os.environ, **env_values}
    # Children get their own session, so a Ctrl-C reaches only us; we stop them with SIGTERM.
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "control_plane", "serve"], env=child_env, start_new_session=True
        ),
        subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "node_agent", "serve", "--config", str(config_file)],
            env=child_env,
            start_new_session=True,
        ),
    ]
    stopping = False

    def request_stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        _wait_healthy(f"http://127.0.0.1:{port}/healthz", processes[0], "control plane")
        _wait_healthy(f"http://127.0.0.1:{agent_port}/healthz", processes[1], "agent")
    except RuntimeError as err:
        print(f"stellar-cp dev: {err}", file=sys.stderr)
        _stop(*processes)
        return 1
    warnings = [w for w in (_docker_warning(), demo_warning) if w]
    sftp = _sftp_lines(data_dir, port, sftp_port) if sftp_port else []
    _print_banner(data_dir, port, created, admin_password, warnings, sftp)
    exit_code = 0
    while not stopping:
        if any(p.poll() is not None for p in processes):
            print("stellar-cp dev: a service exited; stopping the other", file=sys.stderr)
            exit_code = 1
            break
        time.sleep(0.3)
    agent_was_running = processes[1].poll() is None
    print(
        "stellar-cp dev: stopping: the agent stops the game servers and releases its storage "
        "pool first",
        flush=True,
    )
    if not _stop(*processes) or not agent_was_running:
        print(
            "stellar-cp dev: the agent did not stop by itself in time, so game containers "
            "may still run (docker ps --filter label=io.stellarstack.managed=true) and its "
            f"pool may still be mounted at {data_dir / 'agent' / 'pool'}",
            file=sys.stderr,
        )
        exit_code = 1
    print("stellar-cp dev: stopped")
    return exit_code


def _sftp_lines(data_dir: Path, port: int, sftp_port: int) -> list[str]:
    """How to reach a server's files over SFTP on the local agent (docs/sftp.md)."""
    key = asyncssh.read_private_key(data_dir / "agent" / HOST_KEY_NAME)
    api = f"http://127.0.0.1:{port}/api/v1"
    return [
        f"  SFTP          : sftp -P {sftp_port} <account>.<server short id>@127.0.0.1",
        f"  host key      : {key.get_fingerprint('sha256')}   (check it at the first connection)",
        f"  your account  : GET {api}/account/ssh-keys shows it (sftp_account); the short id is",
        "                  the first 8 hex digits of the server's id",
        f"  with a key    : POST {api}/account/ssh-keys {{name, public_key}}",
        f"  or a password : POST {api}/servers/<id>/sftp-password (per server, shown once)",
    ]


def _print_banner(
    data_dir: Path,
    port: int,
    created: str | None,
    password: str,
    warnings: list[str],
    sftp: list[str],
) -> None:
    env_file = data_dir / "control-plane.env"
    lines = [
        "",
        "StellarStack is running.",
        f"  panel         : http://localhost:{port}/   (open it in a browser; API under /api/v1)",
        f"  local node    : {NODE_NAME!r}, agent config {data_dir / 'agent.toml'}",
    ]
    if created:
        lines += [
            f"  first admin   : {created}",
            f"  password      : {password}   (shown once; change it after logging in)",
        ]
    else:
        lines.append("  admin         : an admin exists already; log in with its credentials")
    lines += [
        f"  log in        : curl -c jar -H 'Content-Type: application/json' -d "
        f'\'{{"email": "{ADMIN_EMAIL}", "password": "…"}}\' http://localhost:{port}/api/v1/auth/login',
        f"  CLI           : set -a; . {env_file}; set +a; stellar-cp node ping {NODE_NAME}",
        "  demo game     : stellar-cp demo create   (a Freeciv server on this node, in the CLI's",
        "                  environment as above; it prints the server's id and console command)",
        *sftp,
        "Press Ctrl-C to stop both services.",
    ]
    lines[1:1] = [f"WARNING: {warning}" for warning in warnings]
    print("\n".join(lines), flush=True)
