"""The node's SFTP access table, as the control plane last pushed it (docs/sftp.md).

:class:`AccessTable` answers two questions: who is ``<account>.<short id>`` and which keys
let them in (at login), and what does that user hold on that server *now* (at every SFTP
request, and whenever a new table arrives, to close sessions it no longer allows). The table
is kept on disk, so an agent restart does not lock players out until the next push. A table
older than the one held (a lower ``version``) is refused: it can only be a push that was
overtaken or delayed, and applying it could bring back access a newer one took away.
"""

from __future__ import annotations

import collections
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import asyncssh
import structlog
from pydantic import ValidationError

from shared.sftp_api import SftpAccess, SftpUser, short_id

log = structlog.get_logger("agent.sftp")
TABLE_NAME: Final = "sftp-access.json"
# A password session's credential: this prefix and the hash it logged in against.
PASSWORD_PREFIX: Final = b"password:"


@dataclass(frozen=True)
class Grant:
    """One user's access to one server: their row and their keys' blobs."""

    server_id: uuid.UUID
    user: SftpUser
    key_blobs: frozenset[bytes]

    def still_lets_in(self, credential: bytes) -> bool:
        """Whether the key blob (or password hash) a session logged in with is still valid."""
        if credential.startswith(PASSWORD_PREFIX):
            hashed = self.user.password_hash
            return hashed is not None and credential == PASSWORD_PREFIX + hashed.encode()
        return credential in self.key_blobs

    def holds(self, permission: str) -> bool:
        return permission in self.user.permissions


def _key_blobs(user: SftpUser, server_id: uuid.UUID) -> frozenset[bytes]:
    blobs = set()
    for text in user.keys:
        try:
            blobs.add(asyncssh.import_public_key(text).public_data)
        except (asyncssh.KeyImportError, ValueError):
            # The control plane checks keys when they are added; one that still does not
            # parse here is left out, never a reason to refuse the whole table.
            log.warning("sftp key not usable", server=str(server_id), user=str(user.user_id))
    return frozenset(blobs)


class StaleTable(Exception):
    """A pushed table older than the one the agent holds."""

    def __init__(self, offered: int, held: int) -> None:
        super().__init__(
            f"this SFTP access table (version {offered}) is older than the one "
            f"the node holds (version {held}); it was not applied"
        )
        self.offered, self.held = offered, held


class AccessTable:
    """The table and its indexes; :meth:`replace` swaps all of it at once."""

    def __init__(self, data_dir: Path) -> None:
        self._path = data_dir / TABLE_NAME
        self._by_login: dict[str, Grant] = {}
        self._by_user: dict[tuple[uuid.UUID, uuid.UUID], Grant] = {}
        self._listeners: list[Callable[[], None]] = []
        # The version of the table held (0: none yet).
        self.version = 0

    def load(self) -> None:
        """Read the table the control plane pushed before this agent started (if any)."""
        try:
            raw = self._path.read_bytes()
        except FileNotFoundError:
            return
        try:
            self._index(SftpAccess.model_validate_json(raw))
        except ValidationError as err:
            log.warning("stored sftp access table unusable; waiting for a push", error=str(err))

    def replace(self, access: SftpAccess) -> bool:
        """Store and use ``access``; listeners (open sessions) check themselves against it.

        False: it is the version held already (a retried push; nothing to do). StaleTable:
        it is older than the table held.
        """
        if access.version < self.version:
            raise StaleTable(access.version, self.version)
        if access.version == self.version and self.version > 0:
            return False
        temp = self._path.with_name(TABLE_NAME + ".new")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, access.model_dump_json().encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, self._path)
        self._index(access)
        for listener in list(self._listeners):
            listener()
        return True

    def _index(self, access: SftpAccess) -> None:
        shorts = collections.Counter(short_id(row.server) for row in access.servers)
        by_login: dict[str, Grant] = {}
        by_user: dict[tuple[uuid.UUID, uuid.UUID], Grant] = {}
        for row in access.servers:
            short = short_id(row.server)
            ambiguous = shorts[short] > 1
            if ambiguous:
                log.warning("two servers share a short id; no sftp login by it", short_id=short)
            for user in row.users:
                grant = Grant(row.server, user, _key_blobs(user, row.server))
                by_user[(row.server, user.user_id)] = grant
                if not ambiguous:
                    by_login[f"{user.account}.{short}"] = grant
        self._by_login, self._by_user = by_login, by_user
        self.version = access.version

    def login(self, name: str) -> Grant | None:
        """The grant a login name stands for, or None."""
        return self._by_login.get(name)

    def current(self, server_id: uuid.UUID, user_id: uuid.UUID) -> Grant | None:
        """What ``user_id`` holds on ``server_id`` now (None: no SFTP access any more)."""
        return self._by_user.get((server_id, user_id))

    def on_change(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call ``listener`` after every replace; returns the function that removes it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)
