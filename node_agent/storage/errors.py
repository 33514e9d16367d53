"""What can go wrong with a server's disk, as errors the API turns into its one error shape.

    ApiError
    ├── StorageError              (500 storage_error) a storage command failed or timed out
    └── Conflict
        ├── DiskLimitBelowUsage   (409) a new limit smaller than what the server already uses
        └── ResizeNotSupported    (409) the backend cannot change this volume's size now

Start-up problems (no backend usable as configured) are ConfigErrors, not these.
"""

from __future__ import annotations

from shared.errors import ApiError, Conflict


class StorageError(ApiError):
    """A storage command (btrfs, losetup, mount, mkfs…) failed, timed out or is missing."""

    status = 500
    code = "storage_error"


class DiskLimitBelowUsage(Conflict):
    """Lowering the limit under current usage would leave the game unable to write at all."""


class ResizeNotSupported(Conflict):
    """The backend cannot change this volume's size (now, or ever)."""
