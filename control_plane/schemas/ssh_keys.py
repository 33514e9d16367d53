"""SSH public keys for SFTP, as their owners see them."""

from __future__ import annotations

import datetime as dt
import uuid

from pydantic import Field

from control_plane.schemas.common import Input, Output
from shared.sftp_api import MAX_KEY_TEXT


class SshKeyCreate(Input):
    name: str = Field(min_length=1, max_length=64)
    public_key: str = Field(
        min_length=16,
        max_length=MAX_KEY_TEXT,
        description="One OpenSSH line: Ed25519, ECDSA or RSA of 3072 bits or more",
    )


class SshKeyOut(Output):
    id: uuid.UUID
    name: str
    public_key: str
    fingerprint: str = Field(description="SHA256:…, as OpenSSH shows it")
    created_at: dt.datetime


class SshKeyList(Output):
    data: list[SshKeyOut]
    # The account part of SFTP logins: <sftp_account>.<server short id>.
    sftp_account: str


class SftpPasswordIssued(Output):
    """That a user holds an SFTP password for a server (never the password)."""

    server_id: uuid.UUID
    server_name: str
    created_at: dt.datetime


class SftpPasswordIssuedList(Output):
    data: list[SftpPasswordIssued]


class SftpPasswordOut(Output):
    """Shown once: the panel keeps it encrypted and never shows it again."""

    username: str = Field(description="The SFTP login: <account>.<server short id>")
    password: str


class SftpDetails(Output):
    """How to reach one server's files over SFTP, and the host key to expect."""

    host: str = Field(description="The node's address, as the control plane reaches it")
    port: int
    username: str = Field(description="<account>.<server short id>")
    host_key: str = Field(description="The node's SSH host key (OpenSSH form)")
    fingerprint: str = Field(description="SHA256:…, what the client shows on first connection")
