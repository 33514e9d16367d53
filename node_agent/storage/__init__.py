"""Where the disk quota is enforced: each server's volume and the backend that limits it.

    volume.py     ServerVolume (the protocol every backend implements), DiskUsage
    btrfs.py      BtrfsPool + SubvolumeVolume: a subvolume per server, qgroup limit (default)
    ext4.py       LoopExt4Volume: a loop-mounted ext4 image per server (fallback)
    directory.py  DirectoryVolume + DirectoryQuotaWatch: polled, not enforced (development)
    backend.py    NodeStorage and open_storage(): choose and open the configured backend
    context.py    storage_ctx: the backend's lifetime on the agent's Application
    mounts.py     mount points and loop devices      commands.py  running the host's tools

DESIGN.md "Containers (agent)" says why: a write past the limit must fail inside the game.
"""

from node_agent.storage.backend import NodeStorage, open_storage
from node_agent.storage.directory import DirectoryVolume
from node_agent.storage.volume import DiskUsage, OverLimitHook, ServerVolume

__all__ = [
    "DirectoryVolume",
    "DiskUsage",
    "NodeStorage",
    "OverLimitHook",
    "ServerVolume",
    "open_storage",
]
