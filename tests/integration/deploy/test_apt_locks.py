"""apt-get in the scripts waits for another package manager, says so, and then proceeds.

``deploy/lib/apt.sh`` is what ``deploy/install-agent.sh`` and ``deploy/dev/*.sh`` call apt-get
through. Each test holds one of the locks another apt-get would hold (dpkg's two, apt's lists
lock) in an apt sandbox (tests/integration/deploy/apt_sandbox.py: the host's real locks are
never taken), runs the function, or the whole of ``ensure-services.sh`` with a program hidden
from its PATH, and releases the lock once it said it waits.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

import pytest

from tests.integration.deploy.apt_sandbox import AptSandbox, holding_lock, make_apt_sandbox
from tests.integration.deploy.support import REPO_ROOT

APT_LIB: Final = REPO_ROOT / "deploy" / "lib" / "apt.sh"
ENSURE_SERVICES: Final = REPO_ROOT / "deploy" / "dev" / "ensure-services.sh"
# What `ensure-services.sh test-tools` may install, "installed" in the sandbox.
TEST_TOOL_PACKAGES: Final = [
    "shellcheck",
    "nginx",
    "gcc",
    "libc6-dev",
    "freeciv-server",
    "openssh-client",
    "chromium",
    "prometheus",
    "faketime",
    "nodejs",
    "npm",
]
PACKAGE: Final = "stellar-sandbox-tool"
HELD_SECONDS: Final = 2.0


@pytest.fixture
def sandbox(tmp_path: Path) -> AptSandbox:
    return make_apt_sandbox(tmp_path / "apt", installed=[PACKAGE])


class Script:
    """A script run in the apt sandbox, its output (stdout and stderr) going to a file."""

    def __init__(self, sandbox: AptSandbox, argv: list[str], **env: str) -> None:
        self.log = sandbox.root / "script.log"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=sandbox.env(**env),
            )

    @classmethod
    def lib(cls, sandbox: AptSandbox, command: str, **env: str) -> Script:
        """bash sourcing deploy/lib/apt.sh, then running ``command``."""
        source = f'set -euo pipefail; PROG=test; . "{APT_LIB}"; {command}'
        return cls(sandbox, ["bash", "-c", source], **env)

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def wait_for_output(self, text: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output():
            if self.process.poll() is not None:
                pytest.fail(f"exited {self.process.returncode} before {text!r}:\n{self.output()}")
            if time.monotonic() > deadline:
                self.process.kill()
                pytest.fail(f"{text!r} not printed in {timeout} s:\n{self.output()}")
            time.sleep(0.05)

    def finish(self, timeout: float = 60) -> int:
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise


def waits_while_held_then_proceeds(lock: Path, start: Callable[[], Script]) -> str:
    """Start a script while ``lock`` is held; check it waits, and succeeds after release."""
    with holding_lock(lock):
        script = start()
        script.wait_for_output("waiting up to 600s for it to finish")
        time.sleep(HELD_SECONDS)
        still_waiting = script.process.poll() is None
    code = script.finish()
    output = script.output()

    assert still_waiting, output
    assert code == 0, output
    assert f"(process {os.getpid()} " in output  # names who holds the lock
    assert f"holds {lock})" in output
    assert "Could not get lock" not in output.replace("Waiting for cache lock: Could not", "")
    return output


@pytest.mark.parametrize("lock", ["dpkg_frontend_lock", "dpkg_lock"])
def test_install_waits_for_dpkgs_lock_then_installs(sandbox: AptSandbox, lock: str) -> None:
    output = waits_while_held_then_proceeds(
        getattr(sandbox, lock), lambda: Script.lib(sandbox, f"apt_get_install {PACKAGE}")
    )

    assert "apt-get install: another package manager is running" in output
    assert f"{PACKAGE} is already the newest version" in output


def test_update_waits_for_the_lists_lock_then_updates(sandbox: AptSandbox) -> None:
    output = waits_while_held_then_proceeds(
        sandbox.lists_lock, lambda: Script.lib(sandbox, "apt_get_update && echo updated")
    )

    assert "apt-get update: another package manager is running" in output
    assert output.rstrip().endswith("updated")


@pytest.mark.parametrize(
    ("lock", "command", "complaint"),
    [
        ("dpkg_frontend_lock", f"apt_get_install {PACKAGE}", "Could not get lock"),
        ("lists_lock", "apt_get_update", "giving up"),
    ],
)
def test_the_wait_ends_after_the_configured_time(
    sandbox: AptSandbox, lock: str, command: str, complaint: str
) -> None:
    with holding_lock(getattr(sandbox, lock)):
        started = time.monotonic()
        script = Script.lib(sandbox, command, STELLAR_APT_LOCK_WAIT_SECONDS="2")
        code = script.finish()
        waited = time.monotonic() - started

    assert code != 0
    assert "waiting up to 2s" in script.output()
    assert complaint in script.output()
    assert 1.5 < waited < 30


def test_without_a_lock_held_nothing_is_said_about_waiting(sandbox: AptSandbox) -> None:
    script = Script.lib(sandbox, f"apt_get_update && apt_get_install {PACKAGE}")

    assert script.finish() == 0
    assert "waiting" not in script.output()
    assert f"{PACKAGE} is already the newest version" in script.output()


def path_without(directory: Path, hidden: str) -> str:
    """A PATH of one directory linking every program on PATH now, except ``hidden``."""
    directory.mkdir()
    for entry in os.environ["PATH"].split(os.pathsep):
        for program in sorted(Path(entry).glob("*")) if Path(entry).is_dir() else []:
            link = directory / program.name
            if program.name != hidden and not link.exists() and os.access(program, os.X_OK):
                link.symlink_to(program)
    return str(directory)


@pytest.mark.parametrize("lock", ["lists_lock", "dpkg_frontend_lock"])
def test_ensure_services_waits_for_another_apt_get_then_installs(tmp_path: Path, lock: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("ensure-services.sh installs packages only as root")
    sandbox = make_apt_sandbox(tmp_path / "apt", installed=TEST_TOOL_PACKAGES)
    path = path_without(tmp_path / "bin", "shellcheck")

    output = waits_while_held_then_proceeds(
        getattr(sandbox, lock),
        lambda: Script(sandbox, [str(ENSURE_SERVICES), "test-tools"], PATH=path),
    )

    assert "installing missing packages: shellcheck" in output
    assert "shellcheck is already the newest version" in output
    summary = (
        "test tools: installed (shellcheck, nginx, gcc, freeciv-server, openssh-client, "
        "chromium, promtool, faketime, node + nodeactyl)"
    )
    assert output.rstrip().endswith(summary)
