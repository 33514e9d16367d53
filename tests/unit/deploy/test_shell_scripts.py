"""Every shell script under deploy/, and the test runners (``.ci/run``, ``tests/run``), passes
shellcheck, with what it sources (``-x``)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Final

import pytest

from tests.conftest import require_tool

ROOT: Final = Path(__file__).resolve().parents[3]
DEPLOY: Final = ROOT / "deploy"
SCRIPTS: Final = [*sorted(DEPLOY.rglob("*.sh")), ROOT / ".ci" / "run", ROOT / "tests" / "run"]


def test_the_scripts_include_the_installer_and_the_dev_set_up() -> None:
    names = {script.relative_to(ROOT).as_posix() for script in SCRIPTS}

    assert {
        "deploy/install-agent.sh",
        "deploy/dev/ensure-services.sh",
        "deploy/lib/apt.sh",
        "tests/run",
    } <= names


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.relative_to(ROOT).as_posix())
def test_the_script_is_shellcheck_clean(script: Path) -> None:
    require_tool("shellcheck", "shellcheck")

    result = subprocess.run(
        ["shellcheck", "-x", str(script)], capture_output=True, text=True, check=False
    )

    assert result.returncode == 0, result.stdout
