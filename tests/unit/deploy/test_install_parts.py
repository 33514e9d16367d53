"""The installer's building blocks: unit names, the TOML it writes, bundle parsing."""

from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path

import pytest

from node_agent.provision.bundle import Bundle
from node_agent.provision.errors import InstallError
from node_agent.provision.systemd import systemd_escape_path
from node_agent.provision.toml_writer import dump_toml
from tests.conftest import require_tool


@pytest.mark.parametrize(
    "path", ["/var/lib/stellar-agent/pool", "/tmp/pytest-1/root dir/.x/pool", "/srv/ü/p"]
)
def test_mount_unit_names_match_systemd_escape(path: str) -> None:
    require_tool("systemd-escape", "systemd")
    expected = subprocess.run(
        ["systemd-escape", "--path", path], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert systemd_escape_path(Path(path)) == expected


def test_written_toml_reads_back_the_same() -> None:
    data = {
        "node_id": "0b5c4a38-2f7a-4d44-9a43-1d7e3d2b7a11",
        "listen_port": 8443,
        "facts_refresh_seconds": 2.5,
        "data_dir": Path("/var/lib/stellar-agent"),
        "trusted_keys": {"ed25519-1f": "abc", 'odd key"': "x\\y"},
        "console": {"max_line_bytes": 4096},
    }
    parsed = tomllib.loads(dump_toml(data, "# header"))
    assert parsed == {**data, "data_dir": "/var/lib/stellar-agent"}


def test_the_enrolment_table_is_taken_out_of_the_agents_settings() -> None:
    bundle = Bundle.parse(
        'node_id = "x"\n[trusted_keys]\nk = "v"\n[enrolment]\ncontrol_plane = "198.18.0.1"\n',
        "test",
    )
    assert "enrolment" not in bundle.settings
    assert bundle.control_plane == ["198.18.0.1"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("node_id = ", "not valid TOML"),
        ('node_id = "x"\n', "lacks trusted_keys"),
        ('node_id = "x"\n[trusted_keys]\nk = "v"\n[enrolment]\nsurprise = 1\n', "unknown keys"),
    ],
)
def test_bad_bundles_are_refused(text: str, message: str) -> None:
    with pytest.raises(InstallError, match=message):
        Bundle.parse(text, "test")
