"""apt-get in a sandbox: its own dpkg status, lists and lock files under a test's directory.

``APT_CONFIG`` points apt at the sandbox (and at no snippet of /etc/apt/apt.conf.d, whose hooks
would run on the host), so a test can hold apt's and dpkg's locks and run the real scripts
without touching the host's package database, nor blocking an install running meanwhile.
The packages named are "installed" in the sandbox's status file: ``apt-get install`` takes
the locks, finds them up to date and changes nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import service_missing

STATUS_ENTRY = """Package: {name}
Status: install ok installed
Priority: optional
Section: misc
Installed-Size: 1
Maintainer: StellarStack tests <tests@stellar.invalid>
Architecture: all
Version: 1.0
Description: stands in for {name} in an apt sandbox
"""


@dataclass(frozen=True)
class AptSandbox:
    root: Path

    @property
    def admin_dir(self) -> Path:
        return self.root / "dpkg"

    @property
    def lists_dir(self) -> Path:
        return self.root / "lists"

    @property
    def dpkg_frontend_lock(self) -> Path:
        return self.admin_dir / "lock-frontend"

    @property
    def dpkg_lock(self) -> Path:
        return self.admin_dir / "lock"

    @property
    def lists_lock(self) -> Path:
        return self.lists_dir / "lock"

    @property
    def config(self) -> Path:
        return self.root / "apt.conf"

    def env(self, **more: str) -> dict[str, str]:
        """The environment that points apt-get (and apt-config) at the sandbox."""
        return {**os.environ, "APT_CONFIG": str(self.config), **more}


def make_apt_sandbox(root: Path, installed: list[str]) -> AptSandbox:
    """A sandbox under ``root`` in which ``installed`` are installed and no source is listed."""
    if shutil.which("apt-get") is None or shutil.which("lslocks") is None:
        service_missing("apt-get and lslocks (util-linux) are needed: a Debian host")
    sandbox = AptSandbox(root)
    for directory in (
        sandbox.admin_dir / "updates",
        sandbox.admin_dir / "info",
        sandbox.lists_dir / "partial",
        root / "cache" / "archives" / "partial",
        root / "sources.list.d",
        root / "apt.conf.d",
        root / "preferences.d",
        root / "log",
    ):
        directory.mkdir(parents=True)
    (sandbox.admin_dir / "status").write_text(
        "\n".join(STATUS_ENTRY.format(name=name) for name in installed), encoding="utf-8"
    )
    (sandbox.admin_dir / "available").touch()
    (root / "sources.list").touch()
    settings = {
        "Dir::State::status": sandbox.admin_dir / "status",
        "Dir::State::Lists": sandbox.lists_dir,
        "Dir::Cache": root / "cache",
        "Dir::Etc::main": root / "no-apt.conf",
        "Dir::Etc::Parts": root / "apt.conf.d",
        "Dir::Etc::sourcelist": root / "sources.list",
        "Dir::Etc::sourceparts": root / "sources.list.d",
        "Dir::Etc::preferencesparts": root / "preferences.d",
        "Dir::Log": root / "log",
    }
    sandbox.config.write_text(
        "".join(f'{name} "{value}";\n' for name, value in settings.items()), encoding="utf-8"
    )
    return sandbox


@contextlib.contextmanager
def holding_lock(path: Path) -> Iterator[None]:
    """Hold an fcntl write lock on ``path``, as apt and dpkg do, until the block ends."""
    with path.open("a") as handle:
        fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        try:
            yield
        finally:
            fcntl.lockf(handle, fcntl.LOCK_UN)
