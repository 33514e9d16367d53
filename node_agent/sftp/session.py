"""One SSH connection to the agent's SFTP listener: login, then one server's files.

:class:`SftpSession` is asyncssh's per-connection server object. It offers public-key and
password authentication, against the access table (``<account>.<short id>``, that account's
keys, and the scrypt hash of its SFTP password for that server), with failures limited per
source address and per known account. A session remembers the key (or password hash) it
logged in with; when that is removed or replaced, the session ends. Once
logged in, every SFTP request asks :meth:`SftpSession.volume` for the files, which checks the
table *now*; a new table that no longer lets the session in closes it at once.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import asyncssh
import structlog

from node_agent.events import NodeEventBus
from node_agent.files.gate import VolumeGate
from node_agent.files.service import FileService, ServerFiles
from node_agent.servers.registry import ServerRegistry
from node_agent.sftp.access import PASSWORD_PREFIX, AccessTable, Grant
from node_agent.sftp.limiter import FailureLimiter, source_of
from node_agent.sftp.limits import MAX_SFTP_CHANNELS_PER_CONNECTION, SftpLimits
from node_agent.sftp.tally import FailureTally, Reason
from shared.errors import NotFound
from shared.node_api import SftpLoginEvent
from shared.sftp_passwords import dummy_hash, verify_password

log = structlog.get_logger("agent.sftp")


@dataclass
class SftpServices:
    """What every session of one listener shares."""

    table: AccessTable
    servers: ServerRegistry
    files: FileService
    limits: SftpLimits
    # Logins and failures of known accounts go to the control plane's audit trail.
    events: NodeEventBus
    by_address: FailureLimiter = field(init=False)
    by_account: FailureLimiter = field(init=False)
    # Every failure, per source and reason, reported once a window (tally.py).
    tally: FailureTally = field(init=False)
    sessions: set[SftpSession] = field(default_factory=set)
    connections: int = 0
    # Open connections per source (IPv4 address or IPv6 /64; at most max_connections keys).
    by_source: dict[str, int] = field(default_factory=dict)
    # Logged-in sessions per user (at most max_connections keys).
    by_user: dict[uuid.UUID, int] = field(default_factory=dict)
    # Of those, the ones not logged in yet.
    unauthenticated: dict[str, int] = field(default_factory=dict)
    # scrypt takes 16 MiB and ~50 ms each: a few at once, whatever a flood asks.
    password_checks: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(2))

    def __post_init__(self) -> None:
        limits = self.limits
        self.by_address, self.by_account = (
            FailureLimiter(
                burst=limits.failures_burst,
                refill_seconds=limits.failure_refill_seconds,
                capacity=limits.failure_buckets,
            )
            for _ in range(2)
        )
        self.tally = FailureTally(limits.failure_report_sources)
        dummy_hash()  # made now (one scrypt), not during the first login without a password

    def revalidate(self) -> None:
        """After a new table: close every session it no longer allows."""
        for session in list(self.sessions):
            session.revalidate()


class SftpSession(asyncssh.SSHServer):
    """One connection: its login, then its server, user and key."""

    def __init__(self, services: SftpServices) -> None:
        self._services = services
        self._conn: asyncssh.SSHServerConnection | None = None
        self._address = "?"
        self._source = "?"  # what limits count it under: the address, or its IPv6 /64
        self._user_counted: uuid.UUID | None = None
        self._candidate: tuple[Grant, bytes] | None = None
        self._grant: Grant | None = None
        self._key: bytes = b""
        self._failed = False
        self._counted = False
        self._pending = False  # counted in services.unauthenticated
        self._forget_gate: Callable[[], None] | None = None
        # Files open on all this connection's SFTP channels; its SFTP channels.
        self.open_files = 0
        self.listings = 0  # directories being read (``VolumeSftp.scandir``)
        self.sftp_channels = 0

    # --- connection -------------------------------------------------------------------------

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn
        peer = conn.get_extra_info("peername")
        self._address = str(peer[0]) if peer else "?"
        self._source = source = source_of(self._address)
        services = self._services
        services.connections += 1
        services.by_source[source] = services.by_source.get(source, 0) + 1
        self._counted = True
        pending = services.unauthenticated.get(source, 0) + 1
        services.unauthenticated[source] = pending
        self._pending = True
        if services.connections > services.limits.max_connections:
            self._refuse("sftp connection refused: too many", "too_many_connections")
        elif services.by_source[source] > services.limits.max_connections_per_address:
            self._refuse(
                "sftp connection refused: too many from one source", "too_many_connections"
            )
        elif pending > services.limits.max_unauthenticated_per_address:
            self._refuse("sftp connection refused: too many logins pending", "too_many_connections")
        elif not services.by_address.allows(source):
            # Before the key exchange: a blocked address costs the agent next to nothing.
            self._services.tally.count(source, "rate_limited")
            conn.close()

    def _refuse(self, message: str, reason: Reason) -> None:
        log.warning(message, address=self._address)
        self._services.tally.count(self._source, reason)
        if self._conn is not None:
            self._conn.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._counted:
            services = self._services
            services.connections -= 1
            left = services.by_source.pop(self._source, 1) - 1
            if left:
                services.by_source[self._source] = left
            self._counted = False
        if self._user_counted is not None:
            users = self._services.by_user
            left = users.pop(self._user_counted, 1) - 1
            if left:
                users[self._user_counted] = left
            self._user_counted = None
        self._logged_in()
        self._services.sessions.discard(self)
        if self._forget_gate is not None:
            self._forget_gate()
            self._forget_gate = None
        if self._grant is None and not self._failed and self._candidate is None:
            return
        if self._grant is not None:
            log.info("sftp session ended", **self._fields())

    def _fields(self) -> dict[str, str]:
        grant = self._grant or (self._candidate[0] if self._candidate else None)
        fields = {"address": self._address}
        if grant is not None:
            fields |= {"server": str(grant.server_id), "user": str(grant.user.user_id)}
        return fields

    def _logged_in(self) -> None:
        """No longer counted as a pending login of its address."""
        if self._pending:
            pending = self._services.unauthenticated
            left = pending.pop(self._source, 1) - 1
            if left:
                pending[self._source] = left
            self._pending = False

    # --- authentication ---------------------------------------------------------------------

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return True

    async def validate_password(self, username: str, password: str) -> bool:
        services = self._services
        grant = services.table.login(username)
        if not self._may_try(grant, username, password=True):
            return False
        hashed = grant.user.password_hash if grant is not None else None
        # No grant or no password: the same scrypt, against a hash no one's password matches,
        # so the answer's time does not reveal which accounts have a password.
        async with services.password_checks:
            check = asyncio.ensure_future(
                asyncio.to_thread(verify_password, password, hashed or dummy_hash())
            )
            try:
                matches = await asyncio.shield(check)
            except asyncio.CancelledError:
                # The client sent its next attempt before this one was answered (asyncssh
                # cancels the check then). The scrypt runs on: it keeps its slot until it
                # ends, and a wrong password counts — else attempts sent 10 ms apart were
                # never limited, and only their CPU was spent.
                if not await check:
                    self._failed = False
                    self._fail(grant, username, "password")
                raise
        if matches and grant is not None and hashed is not None:
            self._require_room(grant)
            self._candidate = (grant, PASSWORD_PREFIX + hashed.encode())
            return True
        # Every wrong password counts (a key offer counts once per connection).
        self._failed = False
        self._fail(grant, username, "password")
        return False

    def kbdint_auth_supported(self) -> bool:
        return False

    def host_based_auth_supported(self) -> bool:
        return False

    def public_key_auth_supported(self) -> bool:
        return True

    def _may_try(self, grant: Grant | None, username: str, *, password: bool = False) -> bool:
        # An account's own bucket guards its password only: a key cannot be guessed, so a
        # flood of wrong passwords for an account never locks out its owner's keys.
        services = self._services
        if not services.by_address.allows(self._source) or (
            password and grant is not None and not services.by_account.allows(username)
        ):
            log.warning("sftp login refused: too many failures", address=self._address)
            services.tally.count(self._source, "rate_limited")
            return False
        return True

    def _fail(self, grant: Grant | None, username: str, method: str = "publickey") -> None:
        if self._failed:
            return  # one failure per connection for keys: offering several is no attack
        self._failed = True
        services = self._services
        services.by_address.failed(self._source)
        reason: Reason = "unknown_account"
        if grant is not None:
            reason = "wrong_password" if method == "password" else "wrong_key"
        services.tally.count(self._source, reason)
        if grant is not None:
            if method == "password":
                services.by_account.failed(username)
            self._publish(grant, success=False, method=method)
        log.warning(
            "sftp login failed",
            address=self._address,
            username=username[:64],
            known=grant is not None,
        )

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        grant = self._services.table.login(username)
        if not self._may_try(grant, username):
            return False
        if grant is not None and key.public_data in grant.key_blobs:
            self._require_room(grant)
            self._candidate = (grant, key.public_data)
            return True
        self._fail(grant, username)
        return False

    def _too_many_sessions(self, grant: Grant) -> str | None:
        """Why ``grant``'s user may open no other session now (None: they may)."""
        services = self._services
        cap = services.limits.max_sessions_per_user
        if services.by_user.get(grant.user.user_id, 0) < cap:
            return None
        log.warning("sftp session refused: too many", user=str(grant.user.user_id), cap=cap)
        services.tally.count(self._source, "too_many_sessions")
        return f"too many SFTP sessions open for this account (at most {cap})"

    def _require_room(self, grant: Grant) -> None:
        """Before accepting a login: the client is told why, in the SSH disconnect message
        (asyncssh sends it for a DisconnectError raised during authentication)."""
        reason = self._too_many_sessions(grant)
        if reason is not None:
            raise asyncssh.DisconnectError(asyncssh.DISC_TOO_MANY_CONNECTIONS, reason)

    def auth_completed(self) -> None:
        if self._candidate is None:
            return
        grant, self._key = self._candidate
        self._logged_in()
        services = self._services
        user_id = grant.user.user_id
        # Checked again here, where no other login can slip in (password checks wait).
        reason = self._too_many_sessions(grant)
        if reason is not None:
            if self._conn is not None:
                self._conn.disconnect(asyncssh.DISC_TOO_MANY_CONNECTIONS, reason)
            return
        services.by_user[user_id] = services.by_user.get(user_id, 0) + 1
        self._user_counted = user_id
        self._grant = grant
        self._services.sessions.add(self)
        try:
            gate = self._services.servers.get(self._grant.server_id).volume_gate
        except NotFound:
            pass
        else:
            # A restore ends the session: its open files would point into the old volume.
            self._forget_gate = gate.on_close(lambda: self.close_now("a restore began"))
        method = "password" if self._key.startswith(PASSWORD_PREFIX) else "publickey"
        log.info("sftp login", method=method, **self._fields())
        self._publish(self._grant, success=True, method=method)

    def _publish(self, grant: Grant, *, success: bool, method: str) -> None:
        self._services.events.publish(
            SftpLoginEvent(
                server=grant.server_id,
                user=grant.user.user_id,
                success=success,
                method="password" if method == "password" else "publickey",
                address=self._address,
            )
        )

    # --- after login ------------------------------------------------------------------------

    def close_now(self, reason: str) -> None:
        """End the connection (its unfinished writes are dropped)."""
        if self._conn is not None:
            log.info("sftp session closed", reason=reason, **self._fields())
            self._conn.close()
        self._services.sessions.discard(self)

    def _current(self) -> Grant | None:
        grant = self._grant
        if grant is None:
            return None
        now = self._services.table.current(grant.server_id, grant.user.user_id)
        if now is None or not now.still_lets_in(self._key):
            return None
        return now

    def revalidate(self) -> None:
        if self._current() is None:
            self.close_now("access revoked")

    def require(self, permission: str) -> Grant:
        """The session's grant as the table has it now, if it holds ``permission``."""
        grant = self._current()
        if grant is None:
            self.close_now("access revoked")
            raise asyncssh.SFTPPermissionDenied("your SFTP access to this server has ended")
        if not grant.holds(permission):
            raise asyncssh.SFTPPermissionDenied(f"this needs the {permission} permission")
        return grant

    def holds(self, permission: str) -> bool:
        """Whether the session may still do ``permission`` (never closes it)."""
        grant = self._current()
        return grant is not None and grant.holds(permission)

    def sftp_started(self) -> bool:
        """Count one more SFTP channel; False (not counted) past the per-connection cap."""
        if self.sftp_channels >= MAX_SFTP_CHANNELS_PER_CONNECTION:
            log.warning("sftp channel refused: too many", **self._fields())
            return False
        self.sftp_channels += 1
        return True

    def volume(self, permission: str) -> tuple[ServerFiles, VolumeGate]:
        """The server's files and volume gate, if the session may still do ``permission``."""
        grant = self.require(permission)
        try:
            server = self._services.servers.get(grant.server_id)
        except NotFound as err:
            self.close_now("server deleted")
            raise asyncssh.SFTPNoSuchFile("the server no longer exists") from err
        files = self._services.files.server(server.volume, server.spec.file_denylist)
        return files, server.volume_gate

    def sftp_ended(self) -> None:
        """The client ended one SFTP channel counted by :meth:`sftp_started`."""
        self.sftp_channels -= 1


def session_of(chan: asyncssh.SSHServerChannel[bytes]) -> SftpSession:
    """The session a channel belongs to."""
    owner = chan.get_connection().get_owner()
    if not isinstance(owner, SftpSession):
        raise RuntimeError("an SFTP channel outside an SftpSession")
    return owner
