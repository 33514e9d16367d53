"""The SFTP listener's lifetime, as two cleanup contexts of the agent's app.

:func:`sftp_table_ctx` (before the node's facts are first published): the host key, made at
the first start, and the stored access table. :func:`sftp_listener_ctx` (once servers and
files are up): the asyncssh listener, SFTP subsystem only: no shell, exec, PTY, X11, agent
or port forwarding. At teardown the listener and every open session are closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final, cast

import asyncssh
import structlog
from aiohttp import web
from asyncssh.constants import FXP_OPENDIR
from asyncssh.packet import SSHPacket

from node_agent.keys import (
    FILES,
    NODE_EVENTS,
    SERVERS,
    SETTINGS,
    SFTP_ACCESS,
    SFTP_INFO,
    SFTP_SERVICES,
)
from node_agent.sftp.access import AccessTable
from node_agent.sftp.handler import VolumeSftp
from node_agent.sftp.hostkey import host_key_info, load_or_create_host_key
from node_agent.sftp.limits import (
    MAX_CHANNELS_PER_CONNECTION,
    MAX_DIRECTORY_HANDLES_PER_CHANNEL,
    MAX_PACKET_BYTES,
)
from node_agent.sftp.session import SftpServices, SftpSession, session_of

log = structlog.get_logger("agent.sftp")


async def _capped_recv_packet(self: asyncssh.sftp.SFTPServerHandler) -> SSHPacket:
    """asyncssh's ``recv_packet``, refusing a packet announced longer than MAX_PACKET_BYTES.

    asyncssh reads whatever length the client announces (up to 4 GiB) into memory before
    looking at it. The error raised here ends the SFTP channel (asyncssh's ``recv_packets``
    turns it into its cleanup: open files closed, the channel closed).
    """
    reader = self._reader
    assert reader is not None
    pktlen = int.from_bytes(await reader.readexactly(4), "big")
    if pktlen > MAX_PACKET_BYTES:
        log.warning("sftp packet refused: too long", length=pktlen)
        raise asyncssh.SFTPBadMessage(f"SFTP packet of {pktlen} bytes refused")
    return SSHPacket(await reader.readexactly(pktlen))


_OPENDIR: Final = cast(
    Callable[[asyncssh.sftp.SFTPServerHandler, SSHPacket], Awaitable[bytes]],
    asyncssh.sftp.SFTPServerHandler._packet_handlers[FXP_OPENDIR],
)


async def _capped_opendir(self: asyncssh.sftp.SFTPServerHandler, packet: SSHPacket) -> bytes:
    """asyncssh's OPENDIR, refused past MAX_DIRECTORY_HANDLES_PER_CHANNEL: it keeps every
    directory handle a client opens (its count of open files does not see them)."""
    if len(self._dir_handles) >= MAX_DIRECTORY_HANDLES_PER_CHANNEL:
        raise asyncssh.SFTPFailure(
            f"too many open directories: at most {MAX_DIRECTORY_HANDLES_PER_CHANNEL}; close some"
        )
    return await _OPENDIR(self, packet)


_SESSION_OPEN: Final = asyncssh.connection.SSHServerConnection._process_session_open


def _capped_session_open(
    self: asyncssh.connection.SSHServerConnection, packet: SSHPacket
) -> tuple[asyncssh.SSHServerChannel[Any], asyncssh.SSHServerSession[Any]]:
    """asyncssh's session channel open, refused past MAX_CHANNELS_PER_CONNECTION: it keeps
    every session channel a client opens (40,000 idle ones had taken 230 MiB)."""
    if len(self._channels) >= MAX_CHANNELS_PER_CONNECTION:
        raise asyncssh.ChannelOpenError(
            asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED,
            f"at most {MAX_CHANNELS_PER_CONNECTION} channels per connection",
        )
    return _SESSION_OPEN(self, packet)


# asyncssh builds its server handler and its channels itself (no factory for either): its
# packet reader, its OPENDIR and its session channel open are replaced here, for every SSH
# server in the agent (this listener is the only one). SFTP handlers are dispatched through
# a table, so the table's entry is replaced; channel opens by name, so the method is.
setattr(asyncssh.sftp.SFTPServerHandler, "recv_packet", _capped_recv_packet)  # noqa: B010
asyncssh.sftp.SFTPServerHandler._packet_handlers[FXP_OPENDIR] = _capped_opendir
setattr(  # noqa: B010
    asyncssh.connection.SSHServerConnection, "_process_session_open", _capped_session_open
)


async def sftp_table_ctx(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: the host key and the access table (only when SFTP is on)."""
    settings = app[SETTINGS]
    table = AccessTable(settings.data_dir)
    app[SFTP_ACCESS] = table
    if settings.sftp_port is not None:
        settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = load_or_create_host_key(settings.data_dir)
        app[SFTP_INFO] = host_key_info(key, settings.sftp_port)
        table.load()
    yield


async def _report_failures(services: SftpServices, seconds: float) -> None:
    """Each window: the failed logins counted per source, one node event each (tally.py)."""
    while True:
        await asyncio.sleep(seconds)
        events = services.tally.drain()
        for event in events:
            services.events.publish(event)
        if events:
            log.info("sftp failures reported", sources=len(events), total=services.tally.total)


def _sftp_factory(chan: asyncssh.SSHServerChannel[bytes]) -> VolumeSftp:
    return VolumeSftp(chan, session_of(chan))


async def sftp_listener_ctx(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: serve SFTP on ``sftp_listen_host:sftp_port`` until the agent stops."""
    settings = app[SETTINGS]
    if settings.sftp_port is None:
        yield
        return
    services = SftpServices(
        table=app[SFTP_ACCESS],
        servers=app[SERVERS],
        files=app[FILES],
        limits=settings.sftp,
        events=app[NODE_EVENTS],
    )
    app[SFTP_SERVICES] = services
    remove_listener = services.table.on_change(services.revalidate)
    key = load_or_create_host_key(settings.data_dir)
    acceptor = await asyncssh.create_server(
        functools.partial(SftpSession, services),
        settings.sftp_listen_host,
        settings.sftp_port,
        server_host_keys=[key],
        sftp_factory=_sftp_factory,
        allow_scp=False,
        allow_pty=False,
        x11_forwarding=False,
        agent_forwarding=False,
        login_timeout=settings.sftp.login_timeout_seconds,
        server_version="StellarStack",
    )
    log.info("sftp listening", host=settings.sftp_listen_host, port=settings.sftp_port)
    reporter = asyncio.create_task(
        _report_failures(services, settings.sftp.failure_report_seconds), name="sftp-failures"
    )
    try:
        yield
    finally:
        reporter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reporter
        remove_listener()
        acceptor.close()
        await acceptor.wait_closed()
        for session in list(services.sessions):
            session.close_now("agent stopping")
