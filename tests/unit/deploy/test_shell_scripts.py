"""Every shell script under deploy/ passes shellcheck, with what it sources (``-x``)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Final

import pytest

from tests.conftest import require_tool

DEPLOY: Final = Path(__file__).resolve().parents[3] / "deploy"
SCRIPTS: Final = sorted(DEPLOY.rglob("*.sh"))


def test_the_scripts_include_the_installer_and_the_dev_set_up() -> None:
    names = {script.relative_to(DEPLOY).as_posix() for script in SCRIPTS}

    assert {"install-agent.sh", "dev/ensure-services.sh", "lib/apt.sh"} <= names


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.relative_to(DEPLOY).as_posix())
def test_the_script_is_shellcheck_clean(script: Path) -> None:
    require_tool("shellcheck", "shellcheck")

    result = subprocess.run(
        ["shellcheck", "-x", str(script)], capture_output=True, text=True, check=False
    )

    assert result.returncode == 0, result.stdout
