"""What the control plane and the agents agree on for SFTP (docs/sftp.md).

The control plane pushes each node its whole :class:`SftpAccess` table (``PUT
/api/v1/sftp/access``): for every server there that is not suspended, the users who hold
``files.sftp`` on it, what else they hold, and their SSH public keys. The agent answers SFTP
logins and checks every SFTP request against that table alone; it never asks the control
plane anything. A login name is ``<account name>.<server short id>``.
"""

from __future__ import annotations

import re
import uuid
from typing import Annotated, Final

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from shared.sftp_passwords import check_hash_format

ACCOUNT_PATTERN: Final = r"^[a-z0-9_-]{1,32}$"
ACCOUNT_NAME: Final = re.compile(ACCOUNT_PATTERN)
SHORT_ID_LENGTH: Final = 8
# One OpenSSH public key line ("ssh-ed25519 AAAA…"); RSA 16384 keys stay far below this.
MAX_KEY_TEXT: Final = 4096
MAX_KEYS_PER_USER: Final = 64
MAX_SERVERS_PER_NODE: Final = 10_000
# Table versions fit a signed 64-bit column.
MAX_ACCESS_VERSION: Final = 2**63 - 1
# The largest table (as JSON) a node takes. It is pushed whole: a node with many servers and
# users has one far over the file-write body limit, and a table a node refuses leaves it
# holding the last one, with every access since revoked.
MAX_ACCESS_TABLE_BYTES: Final = 64 * 1024 * 1024

AccountName = Annotated[str, StringConstraints(pattern=ACCOUNT_PATTERN)]
PublicKeyText = Annotated[str, StringConstraints(min_length=16, max_length=MAX_KEY_TEXT)]
PasswordHash = Annotated[str, StringConstraints(max_length=256), AfterValidator(check_hash_format)]


def short_id(server_id: uuid.UUID) -> str:
    """The server's short id in SFTP user names: the first 8 hex digits of its uuid."""
    return server_id.hex[:SHORT_ID_LENGTH]


def login_name(account: str, server_id: uuid.UUID) -> str:
    """``<account>.<short id>``, what a user types as the SFTP user name."""
    return f"{account}.{short_id(server_id)}"


class SftpUser(BaseModel):
    """One user's SFTP access to one server."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    account: AccountName
    user_id: uuid.UUID
    # Concrete permission nodes (files.read, files.write, files.delete, …); files.sftp is
    # implied by the row's presence.
    permissions: frozenset[str]
    keys: tuple[PublicKeyText, ...] = Field(default=(), max_length=MAX_KEYS_PER_USER)
    # The scrypt hash of this user's SFTP password for this server (shared/sftp_passwords.py).
    password_hash: PasswordHash | None = None


class SftpServerAccess(BaseModel):
    """Who may use SFTP on one server (a suspended server has no row)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    server: uuid.UUID
    users: tuple[SftpUser, ...] = ()


class SftpAccess(BaseModel):
    """A node's whole SFTP access table; each push replaces the previous one.

    ``version`` grows with every push to a node (the control plane's per-node counter): the
    agent refuses a table older than the one it holds, so a push that was overtaken or
    delayed can never bring back access a newer table took away.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = Field(default=0, ge=0, le=MAX_ACCESS_VERSION)
    servers: tuple[SftpServerAccess, ...] = Field(default=(), max_length=MAX_SERVERS_PER_NODE)


class SftpInfo(BaseModel):
    """Where a node serves SFTP, and its host key (for users to check on first connection)."""

    model_config = ConfigDict(frozen=True)

    port: int
    host_key: str
    # As OpenSSH shows it: "SHA256:<base64 without padding>".
    fingerprint: str
