"""What a test does with a service it runs as a subprocess (an agent, a control-plane
replica): launch it with its output in a log file, wait for ``/healthz``, kill it (SIGKILL),
freeze and thaw it (SIGSTOP/SIGCONT), stop it (SIGTERM, then SIGKILL) and read its log."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar


class ServiceProcess:
    """Subclasses (dataclasses) name the log file and the address; this runs the process."""

    name: str
    _process: subprocess.Popen[bytes] | None = None
    STOP_SECONDS: ClassVar[float] = 10.0

    @property
    def base_url(self) -> str:
        raise NotImplementedError

    @property
    def log_path(self) -> Path:
        raise NotImplementedError

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def launch(self, module_args: list[str], env: Mapping[str, str], cwd: Path) -> None:
        """``python -m <module_args>`` with stdout and stderr appended to the log."""
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", *module_args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=dict(env),
            )

    def wait_healthy(self, timeout: float) -> None:
        """Until ``/healthz`` answers 200; an exit or the timeout raises, with the log."""
        deadline = time.monotonic() + timeout
        url = f"{self.base_url}/healthz"
        while True:
            process = self._process
            if process is None or process.poll() is not None:
                code = None if process is None else process.returncode
                raise RuntimeError(
                    f"{self.name} exited with {code} while starting:\n{self.log_text()}"
                )
            try:
                with urllib.request.urlopen(url, timeout=0.5) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} not healthy after {timeout} s:\n{self.log_text()}")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL, as a crash or the OOM killer would, and reap the process."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.kill()
        process.wait()

    def freeze(self) -> None:
        """SIGSTOP: the process keeps its sockets open and answers nothing (a hung host)."""
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self._process is not None
        self._process.send_signal(signal.SIGCONT)

    def stop(self, timeout: float | None = None) -> int | None:
        """SIGTERM and wait for a clean exit; SIGKILL if it does not come in time. The exit
        code of the stop (None: it had to be killed, or was not running)."""
        process = self._process
        if process is None:
            return None
        code = None
        if process.poll() is None:
            process.send_signal(signal.SIGCONT)  # a frozen one must be able to exit
            process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                code = process.wait(timeout=self.STOP_SECONDS if timeout is None else timeout)
        self.kill()
        return code

    def log_text(self) -> str:
        """Everything the process printed (stdout and stderr), over all of its runs."""
        if not self.log_path.exists():
            return ""
        return self.log_path.read_text(encoding="utf-8", errors="replace")
