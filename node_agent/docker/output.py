"""A container's console output, followed line by line from dockerd's log stream.

The game's stdout and stderr go to the capped json-file log; following that log (rather than
attaching) never applies back-pressure to the game, and the same request replays the tail of
the current run, so a restarted agent has recent lines to show at once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Final

import aiodocker
import aiohttp

from node_agent.docker.errors import ContainerMissing, DockerUnavailable

# A line longer than this is cut; the rest of it is dropped.
MAX_LINE_CHARS: Final = 4096


@dataclass(frozen=True)
class OutputLine:
    """One line the game printed, with dockerd's fixed-width RFC 3339 timestamp."""

    timestamp: str
    text: str


def docker_since(timestamp: str) -> str:
    """An RFC 3339 log timestamp as the ``seconds.nanoseconds`` that ``since`` reads."""
    whole, _, rest = timestamp.partition(".")
    fraction = rest.rstrip("Z").split("+")[0][:9].ljust(9, "0") if rest else "000000000"
    seconds = dt.datetime.fromisoformat(whole.rstrip("Z")).replace(tzinfo=dt.UTC).timestamp()
    return f"{int(seconds)}.{fraction}"


def _split_frame(frame: str) -> tuple[str, str]:
    timestamp, _, text = frame.partition(" ")
    return timestamp, text


async def follow_output(
    docker: aiodocker.Docker, name: str, *, since: str | None, tail: int | None
) -> AsyncIterator[OutputLine]:
    """Lines of ``name``'s stdout and stderr from ``since`` (and at most the last ``tail``).

    The iterator ends when the container stops. A partial line (dockerd splits lines longer
    than 16 KiB) is joined with the frames that follow it.
    """
    since_param = "0" if since is None else docker_since(since)
    tail_param = "all" if tail is None else str(tail)
    pending = ""
    pending_timestamp = ""
    try:
        stream = docker.containers.container(name).log(
            stdout=True,
            stderr=True,
            follow=True,
            timestamps=True,
            since=since_param,
            tail=tail_param,
        )
        async for frame in stream:
            timestamp, text = _split_frame(frame)
            if not pending:
                pending_timestamp = timestamp
            pending += text
            if not pending.endswith("\n"):
                if len(pending) > MAX_LINE_CHARS:
                    pending = pending[:MAX_LINE_CHARS]
                continue
            line, pending = pending[:-1].removesuffix("\r"), ""
            yield OutputLine(pending_timestamp, line[:MAX_LINE_CHARS])
    except aiodocker.DockerError as err:
        if err.status == 404:
            raise ContainerMissing(f"logs {name}: no such container") from err
        raise DockerUnavailable(f"logs {name}: {err.message}") from err
    except (aiohttp.ClientError, OSError) as err:
        raise DockerUnavailable(f"logs {name}: Docker engine not reachable") from err
    if pending:
        yield OutputLine(pending_timestamp, pending[:MAX_LINE_CHARS])
