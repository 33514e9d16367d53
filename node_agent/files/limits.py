"""The caps that protect a node from file operations (``[files]`` in the agent's config)."""

from __future__ import annotations

from typing import Final

from pydantic import BaseModel, ConfigDict, Field

GIB: Final = 1024**3


class FileLimits(BaseModel):
    """Per-operation limits of the file API."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Largest streamed upload (checked against the signed ``size`` before the body is read).
    max_upload_bytes: int = Field(default=16 * GIB, ge=1024)
    # Extraction: bytes written in all, entries, and uncompressed/compressed size ratio.
    max_extract_bytes: int = Field(default=16 * GIB, ge=1024)
    max_extract_entries: int = Field(default=100_000, ge=1)
    max_compression_ratio: float = Field(default=200.0, ge=1.0)
    # Pull from URL: largest body, whole-transfer timeout, concurrent pulls per server.
    max_pull_bytes: int = Field(default=4 * GIB, ge=1024)
    pull_timeout_seconds: float = Field(default=600.0, gt=0, le=86_400)
    pulls_per_server: int = Field(default=2, ge=1, le=16)
    # Compressions and extractions running at once per server: each holds one of the agent's
    # few worker threads for as long as it takes (minutes for gigabytes).
    archive_jobs_per_server: int = Field(default=1, ge=1, le=16)
    # A listing stops after this many entries (and says it was truncated).
    max_list_entries: int = Field(default=10_000, ge=1, le=1_000_000)
