"""A replay cache that outlives the agent process until each token's expiry.

Token ids are kept in memory and appended to a log file before the command runs. The write
goes to the page cache, so a SIGKILLed agent finds every id it accepted when it starts again;
losing the log in a host crash is harmless because a host reboot outlasts every token's
(at most 60 s) lifetime. Start-up drops expired ids and rewrites the log compactly.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from pathlib import Path

_LINE = re.compile(r"^(\d{1,12}) ([A-Za-z0-9_-]{1,64})$")
_COMPACT_AFTER = 10_000


class PersistentReplayCache:
    """jti → expiry, in memory and in an append-only log under the agent's data directory."""

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        self._path = path
        self._clock = clock
        self._seen: dict[str, int] = {}
        self._fd: int | None = None
        self._dead_lines = 0

    def open(self) -> None:
        """Load the ids that have not expired yet and start a fresh, compact log."""
        now = self._clock()
        if self._path.exists():
            for line in self._path.read_text(encoding="ascii", errors="replace").splitlines():
                match = _LINE.match(line)
                if match and int(match[1]) > now:
                    self._seen[match[2]] = int(match[1])
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._rewrite()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __len__(self) -> int:
        return len(self._seen)

    def remember(self, jti: str, expires_at: int) -> bool:
        """Record ``jti`` until ``expires_at``; False if it was seen before (a replay)."""
        if self._fd is None:
            raise RuntimeError("replay cache is not open")
        if jti in self._seen:
            return False
        self._seen[jti] = expires_at
        os.write(self._fd, f"{expires_at} {jti}\n".encode("ascii"))
        if len(self._seen) + self._dead_lines > 2 * _COMPACT_AFTER:
            self.prune()
        return True

    def prune(self) -> None:
        """Forget expired ids; rewrite the log once it is mostly dead lines."""
        now = self._clock()
        expired = [jti for jti, exp in self._seen.items() if exp <= now]
        for jti in expired:
            del self._seen[jti]
        self._dead_lines += len(expired)
        if self._dead_lines > _COMPACT_AFTER and self._dead_lines > len(self._seen):
            self._rewrite()

    def _rewrite(self) -> None:
        tmp = self._path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600)  # a leftover temp file keeps its old mode otherwise
            os.write(
                fd, "".join(f"{exp} {jti}\n" for jti, exp in self._seen.items()).encode("ascii")
            )
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self._path)
        self.close()
        self._fd = os.open(self._path, os.O_WRONLY | os.O_APPEND)
        self._dead_lines = 0
