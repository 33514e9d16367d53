"""What the agent keeps on disk about each server: spec, install phase, desired power.

One JSON file per server in ``<data_dir>/servers/<uuid>.json``, written to a temporary file,
fsynced and renamed over the old one (and the directory fsynced), so a crash or power cut
leaves either the old record or the new one, never half of one.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path
from typing import Final

import structlog
from pydantic import BaseModel, ConfigDict, ValidationError

from shared.server_spec import DesiredPower, InstallOutcome, InstallPhase, ServerSpec

log = structlog.get_logger("agent.servers")
SERVERS_DIR: Final = "servers"


class ServerRecord(BaseModel):
    """One server as the agent remembers it across restarts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    spec: ServerSpec
    install: InstallPhase = "none"
    install_exit_code: int | None = None
    # How the last finished install ended (what its InstallEvent said).
    last_install: InstallOutcome | None = None
    desired_power: DesiredPower = "stopped"
    # True when the crash-loop guard gave up on the server: it stays crashed until started.
    crashed: bool = False
    # The spec changed while the game ran: its container is rebuilt at the next start.
    spec_pending: bool = False


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_suffix(".tmp")
    with temporary.open("w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _read_all(directory: Path) -> list[tuple[Path, str]]:
    if not directory.is_dir():
        return []
    return [(path, path.read_text(encoding="utf-8")) for path in sorted(directory.glob("*.json"))]


class RecordStore:
    """The servers directory under the agent's data dir."""

    def __init__(self, data_dir: Path) -> None:
        self._directory = data_dir / SERVERS_DIR

    def path(self, server_id: uuid.UUID) -> Path:
        return self._directory / f"{server_id}.json"

    async def load_all(self) -> list[ServerRecord]:
        """Every readable record (an unreadable one is logged and skipped)."""
        records = []
        for path, text in await asyncio.to_thread(_read_all, self._directory):
            try:
                records.append(ServerRecord.model_validate_json(text))
            except ValidationError:
                log.error("unreadable server record skipped", path=str(path))
        return records

    async def save(self, record: ServerRecord) -> None:
        path = self.path(record.spec.uuid)
        await asyncio.to_thread(_write_atomically, path, record.model_dump_json())

    async def remove(self, server_id: uuid.UUID) -> None:
        await asyncio.to_thread(self.path(server_id).unlink, missing_ok=True)
