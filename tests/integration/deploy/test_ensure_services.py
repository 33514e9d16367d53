"""``deploy/dev/ensure-services.sh`` run again where everything runs: nothing to do, all ready.

``make test`` has just brought everything up, so a second run must only confirm it. apt-get is
pointed at an empty sandbox (tests/integration/deploy/apt_sandbox.py): an attempt to install
anything would fail there, and the host's package database is never touched.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Final

import pytest

from tests.conftest import REQUIRE_SERVICES
from tests.integration.deploy.apt_sandbox import make_apt_sandbox
from tests.integration.deploy.support import REPO_ROOT

ENSURE_SERVICES: Final = REPO_ROOT / "deploy" / "dev" / "ensure-services.sh"


def test_a_second_run_finds_everything_ready_and_installs_nothing(tmp_path: Path) -> None:
    if not REQUIRE_SERVICES:
        pytest.skip("only after make test brought everything up: it would install and start")
    sandbox = make_apt_sandbox(tmp_path / "apt", installed=[])

    started = time.monotonic()
    result = subprocess.run(
        [str(ENSURE_SERVICES), "docker", "postgres", "redis", "test-tools"],
        capture_output=True,
        text=True,
        timeout=120,
        env=sandbox.env(),
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert [line.split(":")[0] for line in result.stdout.splitlines()] == [
        "docker",
        "postgres",
        "redis",
        "test tools",
    ]
    assert "installing" not in result.stderr
    assert "starting" not in result.stderr
    assert result.stderr.count("already") == 4, result.stderr
    assert time.monotonic() - started < 30
