"""Schemas of the agent's backup routes (``node_agent/api/backups.py``).

A backup's key is the server's AES-256 key, base64: the control plane keeps it (encrypted at
rest) and sends it with each create and restore command; the agent never stores it.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import uuid
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_serializer,
    field_validator,
    model_validator,
)

from shared.backup_format import KEY_BYTES
from shared.server_spec import CONSOLE_TEXT

BackupState = Literal["running", "completed", "failed"]
Consistency = Literal["snapshot", "stopped", "live"]


def decode_key(key: SecretStr) -> bytes:
    """The 32 raw bytes of a base64 (standard or url-safe) backup key."""
    text = key.get_secret_value().strip()
    try:
        raw = base64.b64decode(text.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError) as err:
        raise ValueError("the key is not base64") from err
    if len(raw) != KEY_BYTES:
        raise ValueError(f"the key must be {KEY_BYTES} bytes")
    return raw


class _KeyedOrder(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    key: SecretStr = Field(description="base64 of the server's 32-byte backup key")

    @field_validator("key")
    @classmethod
    def _valid_key(cls, key: SecretStr) -> SecretStr:
        decode_key(key)
        return key

    def key_bytes(self) -> bytes:
        return decode_key(self.key)

    @field_serializer("key", when_used="json")
    def _key_on_the_wire(self, key: SecretStr) -> str:
        # The order carries the key to the node: in JSON it is sent, never masked; printed
        # or logged (repr, str), it stays hidden.
        return key.get_secret_value()


class BackupCreate(_KeyedOrder):
    """``POST .../backups``: make a backup of the server's volume in the background."""

    backup_id: uuid.UUID
    # gitignore-style patterns (as the deny-list) of paths to leave out.
    ignore: list[str] = Field(default_factory=list, max_length=1000)
    # Typed on the console first if the game runs (e.g. ``save-all``), then waited for.
    pre_command: str | None = Field(
        default=None, min_length=1, max_length=256, pattern=CONSOLE_TEXT
    )
    pre_command_wait_seconds: float = Field(default=5.0, ge=0, le=120)

    @field_validator("ignore")
    @classmethod
    def _short_patterns(cls, patterns: list[str]) -> list[str]:
        if any(len(pattern) > 4096 or "\x00" in pattern for pattern in patterns):
            raise ValueError("an ignore pattern is longer than 4096 characters or holds NUL")
        return patterns

    @field_validator("pre_command")
    @classmethod
    def _one_line(cls, line: str | None) -> str | None:
        if line is not None and ("\n" in line or "\r" in line):
            raise ValueError("the pre-command is one line")
        return line


class BackupRestore(_KeyedOrder):
    """``POST .../backups/{backup_id}/restore``: replace the volume's files with the backup."""


class RestoreOutcome(BaseModel):
    """The last restore of a backup."""

    status: BackupState
    started_at: datetime.datetime
    finished_at: datetime.datetime | None = None
    reason: str | None = None
    files: int | None = None
    bytes: int | None = None


class BackupRecord(BaseModel):
    """What the agent knows of one backup (``running`` until it completes or fails)."""

    backup_id: uuid.UUID
    server: uuid.UUID
    status: BackupState
    started_at: datetime.datetime
    finished_at: datetime.datetime | None = None
    reason: str | None = None
    # How the copy was taken: a read-only btrfs snapshot, files of a stopped game, or files
    # read while the game ran (best effort: a file written meanwhile may be inconsistent).
    consistency: Consistency | None = None
    size_bytes: int | None = Field(
        default=None, description="the .tar.gz a download gives (decrypted on its way)"
    )
    sha256: str | None = Field(default=None, description="hex SHA-256 of that .tar.gz")
    stored_bytes: int | None = Field(default=None, description="the encrypted file on the node")
    stored_sha256: str | None = Field(
        default=None, description="hex SHA-256 of the encrypted file on the node"
    )
    archive_bytes: int | None = Field(default=None, description="the tar, before gzip")
    files: int | None = None
    directories: int | None = None
    symlinks: int | None = None
    skipped: int | None = Field(default=None, description="special or vanished files")
    format_version: int = 1
    chunk_bytes: int | None = None
    ignore: list[str] = Field(default_factory=list)
    restore: RestoreOutcome | None = None

    @model_validator(mode="before")
    @classmethod
    def _stored_figures_named_apart(cls, data: Any) -> Any:
        """A record from before ``stored_bytes`` existed gave the encrypted file's figures as
        ``size_bytes`` and ``sha256``: move them to the stored ones (the download's unknown)."""
        if (
            isinstance(data, dict)
            and "stored_bytes" not in data
            and data.get("size_bytes") is not None
        ):
            return {
                **data,
                "stored_bytes": data["size_bytes"],
                "stored_sha256": data.get("sha256"),
                "size_bytes": None,
                "sha256": None,
            }
        return data


class BackupList(BaseModel):
    """``GET .../backups``: every backup of the server on this node, oldest first."""

    backups: list[BackupRecord]
