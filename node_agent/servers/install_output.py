"""What an installer printed, kept bounded, and the words that say how its run ended.

:class:`InstallOutput` keeps the last :data:`MAX_INSTALL_LINES` lines, each cleaned (terminal
colour codes and control characters removed) and cut at :data:`MAX_INSTALL_LINE_CHARS`: they
go to the control plane in the ``InstallEvent`` and are shown to the user, so a script that
prints megabytes, or draws progress bars, costs a few kilobytes. :func:`failure_reason` says
why an install failed in words a user can act on.
"""

from __future__ import annotations

import re
from collections import deque
from typing import Final

MAX_INSTALL_LINES: Final = 100
MAX_INSTALL_LINE_CHARS: Final = 1024
MAX_REASON_CHARS: Final = 255
# CSI sequences (colours, cursor moves) and two-character escapes.
_ESCAPES: Final = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")
# Every other C0/C1 control character except the tab; NUL would not even fit a JSON column.
_CONTROL: Final = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def clean_line(text: str) -> str:
    """``text`` without escape sequences and control characters, at most the line cap."""
    plain = _CONTROL.sub("", _ESCAPES.sub("", text))
    return plain[:MAX_INSTALL_LINE_CHARS]


class InstallOutput:
    """The last lines of one installer run."""

    def __init__(self, max_lines: int = MAX_INSTALL_LINES) -> None:
        self._lines: deque[str] = deque(maxlen=max_lines)
        self.count = 0

    def add(self, text: str) -> None:
        self._lines.append(clean_line(text))
        self.count += 1

    def last_lines(self) -> list[str]:
        return list(self._lines)


def failure_reason(
    *, exit_code: int | None, timed_out: bool, timeout_seconds: int, oom_killed: bool
) -> str | None:
    """Why a finished installer failed, or None when it succeeded (exit code 0 in time)."""
    if timed_out:
        return f"timed out after {timeout_seconds} s: the installer was killed"
    if exit_code == 0:
        return None
    if oom_killed:
        return "killed: out of memory (the server's memory limit applies to its installer)"
    return f"the install script exited with code {exit_code}"


def short_reason(text: str) -> str:
    """A reason cut to what the control plane stores."""
    return text if len(text) <= MAX_REASON_CHARS else text[: MAX_REASON_CHARS - 1] + "…"
