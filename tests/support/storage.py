"""What a disk backend left on the host: mounts and loop devices under a test's directory.

Tests of the btrfs and ext4 backends mount real filesystems from image files in their tmp
path. :func:`release_everything_under` is their safety net at teardown (unmount, detach),
and :func:`mounts_under` / :func:`loop_devices_under` let them assert that the agent itself
left nothing behind.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from node_agent.storage.mounts import MOUNTINFO, SYS_BLOCK, parse_mountinfo

# A mark for the modules whose tests mount filesystems: without root they are skipped.
needs_root_to_mount = pytest.mark.skipif(
    os.geteuid() != 0, reason="the btrfs and ext4 backends need root to mount filesystems"
)


def _is_under(path: str, root: Path) -> bool:
    resolved = os.path.realpath(root)
    return path == resolved or path.startswith(resolved + os.sep)


def mounts_under(root: Path) -> list[Path]:
    """Mount points at or below ``root``, innermost last."""
    mounts = parse_mountinfo(MOUNTINFO.read_text(encoding="utf-8"))
    return [mount.mount_point for mount in mounts if _is_under(str(mount.mount_point), root)]


def loop_devices_under(root: Path) -> list[str]:
    """Loop devices whose backing file lies below ``root``."""
    devices = []
    for entry in sorted(SYS_BLOCK.glob("loop*")):
        try:
            backing = (entry / "loop" / "backing_file").read_text(encoding="utf-8").strip()
        except OSError:
            continue
        if _is_under(backing.removesuffix(" (deleted)"), root):
            devices.append(f"/dev/{entry.name}")
    return devices


def loop_devices_left_under(root: Path, seconds: float = 5.0) -> list[str]:
    """Loop devices below ``root`` once the kernel has had ``seconds`` to let go of those being
    detached: ``losetup --detach`` of a device something still has open (udev probing it
    after the unmount) only marks it, and the kernel detaches it at the last close."""
    deadline = time.monotonic() + seconds
    while (devices := loop_devices_under(root)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return devices


def release_everything_under(root: Path) -> None:
    """Unmount every mount below ``root`` (innermost first), then detach its loop devices."""
    for mount_point in reversed(mounts_under(root)):
        subprocess.run(["umount", str(mount_point)], check=False, capture_output=True, timeout=60)
    for device in loop_devices_under(root):
        subprocess.run(["losetup", "-d", device], check=False, capture_output=True, timeout=60)


def btrfs(*args: str) -> str:
    """Run a btrfs command and return its output (raising if it fails)."""
    return subprocess.run(
        ["btrfs", *args], check=True, capture_output=True, text=True, timeout=60
    ).stdout
