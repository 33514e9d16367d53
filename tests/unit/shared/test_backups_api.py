"""The agent's backup record: which figures describe the download and which the stored file."""

from __future__ import annotations

import uuid

from shared.backups_api import BackupRecord

BASE = {
    "backup_id": str(uuid.uuid4()),
    "server": str(uuid.uuid4()),
    "status": "completed",
    "started_at": "2026-01-01T00:00:00Z",
}


def test_a_record_written_before_stored_bytes_names_its_figures_as_the_stored_file() -> None:
    # Agents before stored_bytes existed wrote the encrypted file's size and hash here.
    record = BackupRecord.model_validate({**BASE, "size_bytes": 4242, "sha256": "ab" * 32})
    assert (record.stored_bytes, record.stored_sha256) == (4242, "ab" * 32)
    assert (record.size_bytes, record.sha256) == (None, None)


def test_a_current_record_is_read_as_written() -> None:
    figures = {"size_bytes": 100, "sha256": "cd" * 32, "stored_bytes": 164, "stored_sha256": None}
    record = BackupRecord.model_validate({**BASE, **figures})
    assert (record.size_bytes, record.sha256, record.stored_bytes) == (100, "cd" * 32, 164)
    running = BackupRecord.model_validate({**BASE, "status": "running"})
    assert (running.size_bytes, running.stored_bytes) == (None, None)
