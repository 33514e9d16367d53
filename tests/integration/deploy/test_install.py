"""``stellar-agent install`` into a temporary root: the files it writes, their modes, a config
the agent accepts, units systemd accepts; then the installed agent itself, run outside systemd,
answers over TLS to a client pinned to the fingerprint the installer printed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import pytest

from node_agent.provision.layout import Layout
from node_agent.provision.systemd import AGENT_UNIT
from tests.conftest import require_tool, service_missing
from tests.integration.deploy.support import REPO_ROOT, probe
from tests.support.agent_process import SigningKey, free_port
from tests.support.storage import release_everything_under

FINGERPRINT: Final = re.compile(r"^  ((?:[0-9A-F]{2}:){31}[0-9A-F]{2})$", re.MULTILINE)
POOL_SIZE_MIB: Final = "128"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="the installed agent mounts its btrfs pool: root"),
]


@pytest.fixture(autouse=True)
def _btrfs_progs() -> None:
    require_tool("mkfs.btrfs", "btrfs-progs")


def stellar_agent(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "node_agent", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO_ROOT,
        check=False,
    )


@pytest.fixture
def prefix(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "root"
    try:
        yield root
    finally:
        # The installed (production) agent leaves its pool mounted, as it would on a node.
        release_everything_under(tmp_path)


# The bundle's game ports; the agent's own port must be outside them (the installer refuses
# an overlap: it would open the agent to everyone).
GAME_PORTS = range(27000, 27101)


def agent_port() -> int:
    """A free port for the agent, outside the game ports (a CI run drew 27044)."""
    while (port := free_port()) in GAME_PORTS:
        pass
    return port


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    """What `stellar-cp node add` prints, plus the installer's [enrolment] table."""
    key = SigningKey.generate()
    path = tmp_path / "node.toml"
    path.write_text(
        "# stellar-agent config for node 'n1', written by `stellar-cp node add`\n"
        'node_id = "0b5c4a38-2f7a-4d44-9a43-1d7e3d2b7a11"\n'
        'issuer = "stellar-cp"\n'
        'listen_host = "127.0.0.1"\n'
        f"listen_port = {agent_port()}\n"
        'data_dir = "/var/lib/stellar-agent"\n\n'
        f'[trusted_keys]\n"{key.kid}" = "{key.public_text}"\n\n'
        '[enrolment]\ncontrol_plane = ["198.18.0.1"]\n'
        f'game_ports = "{GAME_PORTS.start}-{GAME_PORTS.stop - 1}"\n',
        encoding="utf-8",
    )
    return path


def install(bundle: Path, prefix: Path) -> subprocess.CompletedProcess[str]:
    if not Path("/var/run/docker.sock").exists():
        service_missing("Docker is not running (the installer checks it)")
    return stellar_agent(
        "install",
        "--bundle",
        str(bundle),
        "--prefix",
        str(prefix),
        "--agent-bin",
        str(Path(sys.executable).parent / "stellar-agent"),
        "--pool-size-mib",
        POOL_SIZE_MIB,
    )


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o7777


def test_installed_node_serves_tls_with_the_printed_fingerprint(bundle: Path, prefix: Path) -> None:
    result = install(bundle, prefix)
    assert result.returncode == 0, result.stderr
    layout = Layout(prefix.resolve())
    [fingerprint] = FINGERPRINT.findall(result.stdout)

    # Files and modes.
    assert mode(layout.config_dir) == mode(layout.tls_dir) == mode(layout.data_dir) == 0o700
    assert mode(layout.config_file) == 0o600
    assert mode(layout.tls_dir / "agent.key") == 0o600
    assert mode(layout.tls_dir / "agent.crt") == 0o644
    assert mode(layout.pool_image) == 0o600
    units = [layout.unit_dir / AGENT_UNIT, layout.unit_dir / layout.mount_unit]
    assert all(mode(unit) == 0o644 for unit in units)
    # The firewall advice carries the bundle's control plane and game ports.
    assert "elements = { 198.18.0.1 }" in result.stdout
    assert "tcp dport 27000-27100 accept" in result.stdout
    assert "enrolment" not in layout.config_file.read_text(encoding="utf-8")

    checked = stellar_agent("check-config", "--config", str(layout.config_file))
    assert checked.returncode == 0, checked.stderr
    require_tool("systemd-analyze", "systemd")
    verified = subprocess.run(
        ["systemd-analyze", "verify", *map(str, units)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert verified.returncode == 0, verified.stderr

    # Run again: same fingerprint (the key is kept), nothing rewritten.
    again = install(bundle, prefix)
    assert again.returncode == 0, again.stderr
    assert FINGERPRINT.findall(again.stdout) == [fingerprint]
    assert "(unchanged)" in again.stdout

    # The installed agent, outside systemd, with the installed config (production, TLS, btrfs).
    port = re.search(r"^listen_port = (\d+)$", layout.config_file.read_text(), re.MULTILINE)
    assert port is not None
    log = (prefix / "agent.log").open("wb")
    agent = subprocess.Popen(
        [sys.executable, "-m", "node_agent", "serve", "--config", str(layout.config_file)],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=REPO_ROOT,
    )
    try:
        answer = probe("https-get", f"https://127.0.0.1:{port.group(1)}/healthz", fingerprint, "20")
        assert answer.startswith("200"), answer + (prefix / "agent.log").read_text()
    finally:
        agent.terminate()
        agent.wait(timeout=15)
        log.close()


def test_uninstall_keeps_data_unless_purged(bundle: Path, prefix: Path) -> None:
    assert install(bundle, prefix).returncode == 0
    layout = Layout(prefix.resolve())
    server_file = layout.data_dir / "servers" / "keep-me"
    server_file.parent.mkdir()
    server_file.write_text("world", encoding="utf-8")

    kept = stellar_agent("uninstall", "--prefix", str(prefix))
    assert kept.returncode == 0, kept.stderr
    assert not (layout.unit_dir / AGENT_UNIT).exists()
    assert server_file.read_text(encoding="utf-8") == "world"
    assert (layout.tls_dir / "agent.key").exists()

    purged = stellar_agent("uninstall", "--prefix", str(prefix), "--purge")
    assert purged.returncode == 0, purged.stderr
    assert not layout.data_dir.exists()
    assert not layout.config_dir.exists()


def test_a_bundle_without_its_keys_is_refused(tmp_path: Path, prefix: Path) -> None:
    bundle = tmp_path / "partial.toml"
    bundle.write_text('node_id = "0b5c4a38-2f7a-4d44-9a43-1d7e3d2b7a11"\n', encoding="utf-8")

    result = stellar_agent(
        "install", "--bundle", str(bundle), "--prefix", str(prefix), "--skip-docker-check"
    )

    assert result.returncode == 1
    assert "lacks trusted_keys" in result.stderr
    assert not prefix.exists()
