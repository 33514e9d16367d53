"""Where a server's backups live on the node, and their records, each written atomically.

``<data_dir>/backups/<server>/<backup>.stbk`` is the encrypted file (``.stbk.part`` while it
is written), ``<backup>.json`` its :class:`~shared.backups_api.BackupRecord`, and
``restore.json`` the journal of a restore in progress. Nothing here holds a key.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import uuid
from pathlib import Path
from typing import Any, Final

from pydantic import ValidationError

from shared.backups_api import BackupRecord

BACKUPS_DIR: Final = "backups"
FILE_SUFFIX: Final = ".stbk"
PART_SUFFIX: Final = ".stbk.part"
RECORD_SUFFIX: Final = ".json"
JOURNAL_NAME: Final = "restore.json"


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data``: a temporary file, fsync, rename, fsync of the directory."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(f".{path.name}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)
    sync_directory(path.parent)


def sync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BackupStore:
    """The backups directory of this node (blocking calls: run them in a worker thread)."""

    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir / BACKUPS_DIR

    def server_dir(self, server_id: uuid.UUID) -> Path:
        return self.root / str(server_id)

    def file(self, server_id: uuid.UUID, backup_id: uuid.UUID) -> Path:
        return self.server_dir(server_id) / f"{backup_id}{FILE_SUFFIX}"

    def part(self, server_id: uuid.UUID, backup_id: uuid.UUID) -> Path:
        return self.server_dir(server_id) / f"{backup_id}{PART_SUFFIX}"

    def _record_path(self, server_id: uuid.UUID, backup_id: uuid.UUID) -> Path:
        return self.server_dir(server_id) / f"{backup_id}{RECORD_SUFFIX}"

    def save(self, record: BackupRecord) -> None:
        data = record.model_dump_json(indent=1).encode("utf-8")
        write_atomically(self._record_path(record.server, record.backup_id), data)

    def load(self, server_id: uuid.UUID, backup_id: uuid.UUID) -> BackupRecord | None:
        try:
            text = self._record_path(server_id, backup_id).read_bytes()
        except FileNotFoundError:
            return None
        return BackupRecord.model_validate_json(text)

    def records(self, server_id: uuid.UUID) -> list[BackupRecord]:
        """The server's records, oldest first (unreadable ones are skipped)."""
        found = []
        directory = self.server_dir(server_id)
        if not directory.is_dir():
            return []
        for path in directory.glob(f"*{RECORD_SUFFIX}"):
            if path.name == JOURNAL_NAME:
                continue
            with contextlib.suppress(ValidationError, OSError):
                found.append(BackupRecord.model_validate_json(path.read_bytes()))
        return sorted(found, key=lambda record: record.started_at)

    def servers(self) -> list[uuid.UUID]:
        """Servers that have a backups directory."""
        if not self.root.is_dir():
            return []
        found = []
        for path in self.root.iterdir():
            with contextlib.suppress(ValueError):
                found.append(uuid.UUID(path.name))
        return found

    def remove(self, server_id: uuid.UUID, backup_id: uuid.UUID) -> None:
        """Delete the backup's file, partial file and record."""
        for path in (
            self.file(server_id, backup_id),
            self.part(server_id, backup_id),
            self._record_path(server_id, backup_id),
        ):
            path.unlink(missing_ok=True)

    # --- the restore journal ---------------------------------------------------------------

    def journal(self, server_id: uuid.UUID) -> dict[str, Any] | None:
        try:
            loaded = json.loads(self.server_dir(server_id).joinpath(JOURNAL_NAME).read_bytes())
        except (FileNotFoundError, ValueError):
            return None
        return loaded if isinstance(loaded, dict) else None

    def write_journal(self, server_id: uuid.UUID, backup_id: uuid.UUID, phase: str) -> None:
        entry = {"backup_id": str(backup_id), "phase": phase}
        write_atomically(self.server_dir(server_id) / JOURNAL_NAME, json.dumps(entry).encode())

    def clear_journal(self, server_id: uuid.UUID) -> None:
        self.server_dir(server_id).joinpath(JOURNAL_NAME).unlink(missing_ok=True)
