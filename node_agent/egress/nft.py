"""Load an egress ruleset with ``nft -f -``: an argv list (never a shell), the script on stdin.

One ``nft -f`` run is one kernel transaction: the table is replaced whole or not at all, so a
game never sees a half-written policy. Every failure becomes an :class:`EgressError` that
names the command and nft's own complaint.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from typing import Final

NFT_COMMAND: Final = ("nft", "-f", "-")
TIMEOUT_SECONDS: Final = 30.0
_ENVIRONMENT: Final = {
    "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
    "LC_ALL": "C",
}


class EgressError(Exception):
    """The egress table could not be loaded or removed; the message says why."""


def _complaint(stderr: bytes) -> str:
    lines = [line.strip() for line in stderr.decode("utf-8", "replace").splitlines()]
    errors = [line for line in lines if "Error:" in line]
    return (errors or [line for line in lines if line] or ["no output"])[0]


def _failed(returncode: int, stderr: bytes) -> EgressError:
    return EgressError(f"`nft -f -` failed (exit {returncode}): {_complaint(stderr)}")


def _not_started(err: OSError) -> EgressError:
    if isinstance(err, FileNotFoundError):
        return EgressError("nft is not installed on this node (apt-get install nftables)")
    return EgressError(f"nft cannot be run by the agent: {err}")


async def load_script(script: str, limit_seconds: float = TIMEOUT_SECONDS) -> None:
    """Run ``nft -f -`` with ``script`` on stdin; EgressError unless nft accepts all of it."""
    try:
        process = await asyncio.create_subprocess_exec(
            *NFT_COMMAND,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=_ENVIRONMENT,
        )
    except OSError as err:
        raise _not_started(err) from err
    try:
        _stdout, stderr = await asyncio.wait_for(
            process.communicate(script.encode("utf-8")), limit_seconds
        )
    except (TimeoutError, asyncio.CancelledError) as err:
        if process.returncode is None:
            process.kill()
        await process.wait()
        if isinstance(err, asyncio.CancelledError):
            raise
        raise EgressError(f"`nft -f -` did not finish within {limit_seconds:g} s") from err
    if process.returncode != 0:
        raise _failed(process.returncode or -1, stderr)


def load_script_now(script: str, limit_seconds: float = TIMEOUT_SECONDS) -> None:
    """:func:`load_script` for the command line (no event loop there)."""
    try:
        # A fixed argv, the script on stdin: never a shell.
        result = subprocess.run(  # noqa: S603
            NFT_COMMAND,
            input=script.encode("utf-8"),
            capture_output=True,
            timeout=limit_seconds,
            env=_ENVIRONMENT,
            check=False,
        )
    except subprocess.TimeoutExpired as err:
        raise EgressError(f"`nft -f -` did not finish within {limit_seconds:g} s") from err
    except OSError as err:
        raise _not_started(err) from err
    if result.returncode != 0:
        raise _failed(result.returncode, result.stderr)
