"""The host as the installer sees it: its tools run, its files written, Docker checked."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Final

from node_agent.provision.errors import InstallError

RUN_TIMEOUT_SECONDS: Final = 120


def say(message: str = "") -> None:
    """One line of the installer's report."""
    print(message, flush=True)


def run(*argv: str, timeout: float = RUN_TIMEOUT_SECONDS) -> subprocess.CompletedProcess[str]:
    """Run a host tool (no shell); :class:`InstallError` if it cannot run at all."""
    try:
        # argv lists of fixed tools and paths, never a shell.
        return subprocess.run(  # noqa: S603
            list(argv), capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        raise InstallError(f"`{' '.join(argv)}` could not run: {err}") from err


def check(result: subprocess.CompletedProcess[str]) -> None:
    """:class:`InstallError` with the tool's last line of complaint if it failed."""
    if result.returncode != 0:
        complaint = (result.stderr or result.stdout).strip().splitlines()
        raise InstallError(
            f"`{' '.join(result.args)}` failed: {complaint[-1] if complaint else 'no output'}"
        )


def write_if_changed(path: Path, text: str, mode: int) -> bool:
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


def ensure_dir(path: Path, mode: int) -> None:
    """The directory, with exactly ``mode``."""
    path.mkdir(parents=True, exist_ok=True, mode=mode)
    os.chmod(path, mode)


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


def require_tools(names: tuple[str, ...], package: str) -> None:
    """:class:`InstallError` naming the apt package if any of the tools is missing."""
    missing = [name for name in names if shutil.which(name) is None]
    if missing:
        raise InstallError(
            f"missing {', '.join(missing)}: apt-get install {package}, then run the installer again"
        )
