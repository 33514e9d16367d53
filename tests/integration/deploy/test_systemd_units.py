"""The shipped units pass ``systemd-analyze verify`` and keep their sandboxing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Final

import pytest

from tests.conftest import require_tool
from tests.integration.deploy.support import REPO_ROOT

SYSTEMD_DIR: Final = REPO_ROOT / "deploy" / "systemd"
VENV_BIN: Final = Path(sys.executable).parent
# `systemd-analyze security` exposure (0 = locked down, 10 = unprotected) measured when the
# units were written; a change that loosens the sandbox fails here on purpose.
MAX_EXPOSURE: Final = {"stellar-control-plane.service": 1.5, "stellar-agent.service": 3.0}
INSTALLED_BINARIES: Final = {
    "/opt/stellarstack/bin/stellar-cp": VENV_BIN / "stellar-cp",
    "/opt/stellar-agent/bin/stellar-agent": VENV_BIN / "stellar-agent",
}


@pytest.fixture(autouse=True)
def _systemd_analyze() -> None:
    # Part of the systemd package; it runs without systemd as PID 1.
    require_tool("systemd-analyze", "systemd")


def as_installed(unit: str, out_dir: Path) -> Path:
    """The unit with its ExecStart pointing at this checkout's binaries (verify runs them)."""
    text = (SYSTEMD_DIR / unit).read_text(encoding="utf-8")
    for shipped, here in INSTALLED_BINARIES.items():
        text = text.replace(shipped, str(here))
    path = out_dir / unit
    path.write_text(text, encoding="utf-8")
    return path


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", *args], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize("unit", sorted(MAX_EXPOSURE))
def test_unit_verifies_cleanly(unit: str, tmp_path: Path) -> None:
    result = analyze("verify", str(as_installed(unit, tmp_path)))

    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == ""


@pytest.mark.parametrize("unit", sorted(MAX_EXPOSURE))
def test_unit_sandbox_exposure_stays_low(unit: str, tmp_path: Path) -> None:
    result = analyze(
        "security",
        "--offline=true",
        f"--threshold={int(MAX_EXPOSURE[unit] * 10)}",
        str(as_installed(unit, tmp_path)),
    )

    assert result.returncode == 0, result.stdout[-2000:] + result.stderr


def test_the_agent_keeps_only_the_capabilities_deploy_readme_documents() -> None:
    text = (SYSTEMD_DIR / "stellar-agent.service").read_text(encoding="utf-8")
    readme = (REPO_ROOT / "deploy" / "README.md").read_text(encoding="utf-8")
    [line] = [line for line in text.splitlines() if line.startswith("CapabilityBoundingSet=")]
    capabilities = line.removeprefix("CapabilityBoundingSet=").split()

    assert sorted(capabilities) == [
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FOWNER",
        "CAP_NET_ADMIN",
        "CAP_SYS_ADMIN",
    ]
    for capability in capabilities:
        assert f"`{capability}`" in readme
