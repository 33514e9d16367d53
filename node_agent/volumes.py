"""Per-server volumes; the backends live in :mod:`node_agent.storage` (kept for old imports)."""

from node_agent.storage.directory import VOLUMES_DIR, DirectoryVolume
from node_agent.storage.volume import DiskUsage, ServerVolume

__all__ = ["VOLUMES_DIR", "DirectoryVolume", "DiskUsage", "ServerVolume"]
