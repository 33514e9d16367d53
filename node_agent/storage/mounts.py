"""Mount points and loop devices, read from the kernel (/proc, /sys) and changed by util-linux.

Reads are plain file reads done in a thread; changes go through ``mount``, ``umount`` and
``losetup`` via :func:`~node_agent.storage.commands.run_command`.
"""

from __future__ import annotations

import asyncio
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from node_agent.storage.commands import run_command
from node_agent.storage.errors import StorageError

MOUNTINFO: Final = Path("/proc/self/mountinfo")
SYS_BLOCK: Final = Path("/sys/block")
_OCTAL_ESCAPE: Final = re.compile(r"\\([0-7]{3})")


@dataclass(frozen=True)
class Mount:
    """One line of /proc/self/mountinfo: what is mounted where."""

    mount_point: Path
    fstype: str
    source: str


def _unescape(field: str) -> str:
    # The kernel writes space, tab, newline and backslash in paths as octal escapes.
    return _OCTAL_ESCAPE.sub(lambda match: chr(int(match.group(1), 8)), field)


def parse_mountinfo(text: str) -> list[Mount]:
    """Every mount listed in mountinfo ``text``, in order (later ones stack on earlier)."""
    mounts = []
    for line in text.splitlines():
        before, separator, after = line.partition(" - ")
        fields, tail = before.split(), after.split()
        if not separator or len(fields) < 5 or len(tail) < 2:
            continue
        mounts.append(Mount(Path(_unescape(fields[4])), tail[0], _unescape(tail[1])))
    return mounts


async def mount_at(mount_point: Path) -> Mount | None:
    """What is mounted at ``mount_point`` now (the top of the stack), or None."""
    target = await asyncio.to_thread(os.path.realpath, mount_point)
    text = await asyncio.to_thread(MOUNTINFO.read_text, encoding="utf-8")
    found = [mount for mount in parse_mountinfo(text) if str(mount.mount_point) == target]
    return found[-1] if found else None


async def mount(source: str, mount_point: Path, *, fstype: str, options: str) -> None:
    """``mount -t fstype -o options source mount_point``."""
    await run_command("mount", "-t", fstype, "-o", options, source, str(mount_point))


async def unmount(mount_point: Path) -> None:
    """``umount mount_point`` if something is mounted there."""
    if await mount_at(mount_point) is not None:
        await run_command("umount", str(mount_point))


def _loop_devices_of(image: Path) -> list[str]:
    wanted = os.path.realpath(image)
    devices = []
    for entry in sorted(SYS_BLOCK.glob("loop*")):
        try:
            backing = (entry / "loop" / "backing_file").read_text(encoding="utf-8").strip()
        except OSError:
            continue  # not attached (or detached while we looked)
        if backing == wanted:
            devices.append(f"/dev/{entry.name}")
    return devices


async def loop_devices_of(image: Path) -> list[str]:
    """The loop devices whose backing file is ``image`` (usually none or one)."""
    return await asyncio.to_thread(_loop_devices_of, image)


async def attach_loop(image: Path) -> str:
    """The loop device backed by ``image``: the one already attached, or a new one."""
    existing = await loop_devices_of(image)
    if existing:
        return existing[0]
    result = await run_command("losetup", "--find", "--show", str(image))
    device = result.stdout.strip()
    if not device.startswith("/dev/loop"):
        raise StorageError(f"losetup attached {image} but printed no device: {result.complaint}")
    return device


async def detach_loops(image: Path) -> None:
    """Detach every loop device backed by ``image``; one still in use goes when released."""
    for device in await loop_devices_of(image):
        result = await run_command("losetup", "--detach", device, check=False)
        if result.returncode != 0 and device in await loop_devices_of(image):
            raise StorageError(f"cannot detach {device} from {image}: {result.complaint}")
