"""The game containers' seccomp profile on the agent's Application (a ``cleanup_ctx``)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Final

import structlog
from aiohttp import web

from node_agent.docker.seccomp import GameSeccomp, SeccompProfileError, load_game_profile
from node_agent.keys import GAME_SECCOMP, SETTINGS, STORAGE
from node_agent.settings import ConfigError

log = structlog.get_logger("agent.docker")
# Written at each start for operators to read; the agent never reads it back.
INSPECTION_FILE: Final = "seccomp-game.json"


def _write_for_inspection(path: Path, text: str) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(text + "\n", encoding="utf-8")
    os.replace(temporary, path)


async def game_seccomp_ctx(app: web.Application) -> AsyncIterator[None]:
    """Build the profile before the agent listens (after storage: the backend decides).

    Without a usable base profile a production agent on btrfs refuses to start; any other
    agent warns and leaves Docker's default profile on its containers.
    """
    settings = app[SETTINGS]
    backend = app[STORAGE].backend
    try:
        profile = await asyncio.to_thread(load_game_profile, settings.seccomp_base_profile)
    except SeccompProfileError as err:
        if settings.environment == "production" and backend == "btrfs":
            raise ConfigError(
                [
                    f"seccomp_base_profile: {err}. Without Docker's default seccomp profile "
                    "the agent cannot stop a game from creating a nested btrfs subvolume, "
                    "which escapes its disk limit; leave seccomp_base_profile out to use "
                    "the copy shipped with the agent, or point it at the engine's "
                    "profiles/seccomp/default.json"
                ]
            ) from err
        log.warning(
            "NESTED BTRFS SUBVOLUMES ARE NOT BLOCKED: no base seccomp profile, so containers "
            "keep Docker's default profile and a game on btrfs can escape its disk limit",
            problem=str(err),
            backend=backend,
        )
        app[GAME_SECCOMP] = GameSeccomp(profile=None, problem=str(err))
    else:
        inspection = settings.data_dir / INSPECTION_FILE
        await asyncio.to_thread(_write_for_inspection, inspection, profile.text)
        log.info(
            "game seccomp profile ready",
            base=str(profile.source),
            written_to=str(inspection),
            sha256=profile.sha256,
        )
        app[GAME_SECCOMP] = GameSeccomp(profile=profile)
    yield
