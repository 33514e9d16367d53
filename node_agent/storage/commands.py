"""Run the host's storage tools: argv lists only (never a shell), with a timeout, never blocking.

Every failure becomes a :class:`~node_agent.storage.errors.StorageError` whose message names
the command and the tool's own last line of complaint, so an operator reading the agent's log
(or the API's error) knows what to fix.
"""

from __future__ import annotations

import asyncio
import os
import shlex
from dataclasses import dataclass
from typing import Final

from node_agent.storage.errors import StorageError

DEFAULT_TIMEOUT_SECONDS: Final = 60.0
# Tools print numbers and messages we parse or quote: keep them in English, unlocalised.
_ENVIRONMENT: Final = {
    "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
    "LC_ALL": "C",
}


@dataclass(frozen=True)
class CommandResult:
    """A finished command: its exit code and decoded output."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def complaint(self) -> str:
        """The tool's last non-empty line of stderr (or stdout), for an error message."""
        lines = [line for line in (self.stderr or self.stdout).splitlines() if line.strip()]
        return lines[-1].strip() if lines else "no output"


def describe(argv: tuple[str, ...]) -> str:
    """The command as one would type it, for messages."""
    return shlex.join(argv)


async def run_command(
    *argv: str, limit_seconds: float = DEFAULT_TIMEOUT_SECONDS, check: bool = True
) -> CommandResult:
    """Run ``argv``; raise StorageError if it cannot start, times out, or (``check``) fails."""
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=_ENVIRONMENT,
        )
    except FileNotFoundError as err:
        raise StorageError(f"{argv[0]} is not installed on this node") from err
    except PermissionError as err:
        raise StorageError(f"{argv[0]} cannot be run by the agent: {err}") from err
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), limit_seconds)
    except (TimeoutError, asyncio.CancelledError) as err:
        # Never leave a half-done storage tool running behind us.
        if process.returncode is None:
            process.kill()
        await process.wait()
        if isinstance(err, asyncio.CancelledError):
            raise
        raise StorageError(f"`{describe(argv)}` did not finish within {limit_seconds:g} s") from err
    result = CommandResult(
        argv=argv,
        returncode=process.returncode if process.returncode is not None else -1,
        stdout=stdout.decode("utf-8", "replace"),
        stderr=stderr.decode("utf-8", "replace"),
    )
    if check and result.returncode != 0:
        raise StorageError(
            f"`{describe(argv)}` failed (exit {result.returncode}): {result.complaint}"
        )
    return result
