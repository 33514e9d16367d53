"""The node's SFTP host key: one Ed25519 key, made once, kept in the agent's data directory.

Made at the agent's first start when missing (mode 0600, written atomically), then read at
every start, so its fingerprint stays what users accepted on their first connection.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Final

import asyncssh

from shared.sftp_api import SftpInfo

HOST_KEY_NAME: Final = "sftp_host_ed25519_key"


class HostKeyError(Exception):
    """The host key file exists but cannot be used."""


def host_key_path(data_dir: Path) -> Path:
    return data_dir / HOST_KEY_NAME


def load_or_create_host_key(data_dir: Path) -> asyncssh.SSHKey:
    """The node's host key, made now if the data directory has none."""
    path = host_key_path(data_dir)
    try:
        info = path.lstat()
    except FileNotFoundError:
        return _create(path)
    if not stat.S_ISREG(info.st_mode):
        raise HostKeyError(f"{path} is not a regular file")
    if info.st_mode & 0o077:
        raise HostKeyError(f"{path} must not be readable by group or others (chmod 600 {path})")
    try:
        key = asyncssh.read_private_key(path)
    except (OSError, asyncssh.KeyImportError) as err:
        raise HostKeyError(f"{path} cannot be read as an SSH private key: {err}") from err
    if key.get_algorithm() != "ssh-ed25519":
        raise HostKeyError(f"{path} is a {key.get_algorithm()} key, not ssh-ed25519")
    return key


def _create(path: Path) -> asyncssh.SSHKey:
    key = asyncssh.generate_private_key("ssh-ed25519", comment="stellar-agent sftp")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temp = path.with_name(path.name + ".new")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, key.export_private_key("openssh"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, path)
    return key


def host_key_info(key: asyncssh.SSHKey, port: int) -> SftpInfo:
    """What the node's system info shows about its SFTP listener."""
    algorithm, blob = key.export_public_key("openssh").decode("ascii").split()[:2]
    public = f"{algorithm} {blob}"  # without the comment: what clients store and show
    return SftpInfo(port=port, host_key=public, fingerprint=key.get_fingerprint("sha256"))
