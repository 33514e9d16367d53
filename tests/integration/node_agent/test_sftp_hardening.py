"""Attacks on the agent's SFTP listener that cost memory, file descriptors or connection slots,
each against the real listener of a live agent (docs/sftp.md "Limits"), and two correctness
checks found with them (asyncssh's own client, a write whose permission was revoked).

The raw tests speak SFTP's wire format themselves over an SSH session channel, as an attacker's
client would: huge reads, a 4 GiB packet header, pipelined reads never taken.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import aiohttp
import asyncssh
import paramiko
import pytest
from asyncssh.channel import SSHClientChannel
from asyncssh.packet import Byte, String, UInt32, UInt64
from paramiko.common import MSG_USERAUTH_REQUEST
from paramiko.message import Message

from node_agent.sftp.limits import (
    MAX_CHANNELS_PER_CONNECTION,
    MAX_DIRECTORY_HANDLES_PER_CHANNEL,
    MAX_LISTINGS_PER_CONNECTION,
)
from tests.integration.node_agent.live_agent import LiveAgent, LiveServers
from tests.integration.node_agent.sftp_client import (
    SftpTarget,
    UserKey,
    connect,
    push_access,
    table,
    user_row,
)
from tests.integration.node_agent.sftp_client import username as login_name
from tests.support.agent_process import SigningKey, free_port

pytestmark = [pytest.mark.docker, pytest.mark.timeout(300)]
MIB = 1024 * 1024
LIST_LIMIT = 100
FXP_INIT, FXP_OPEN, FXP_READ, FXP_HANDLE, FXP_DATA = 1, 3, 5, 102, 103
FXP_CLOSE, FXP_OPENDIR, FXP_READDIR, FXP_STATUS, FXP_NAME = 4, 11, 12, 101, 104


@pytest.fixture(scope="module")
def module_live_agent(
    tmp_path_factory: pytest.TempPathFactory, signing_key: SigningKey
) -> Iterator[LiveAgent]:
    """This module's agent: SFTP on a free port, listings cut at LIST_LIMIT entries."""
    agent = LiveAgent(
        tmp_path_factory.mktemp("sftp-hard"), {signing_key.kid: signing_key.public_text}
    )
    agent.settings.update(sftp_port=free_port())
    agent.files["max_list_entries"] = LIST_LIMIT
    agent.start()
    try:
        yield agent
    finally:
        agent.stop()


def rss_mib(agent: LiveAgent) -> float:
    return agent.rss_kib() / 1024


async def granted(
    servers: LiveServers,
    agent: LiveAgent,
    signing_key: SigningKey,
    http: aiohttp.ClientSession,
    key: UserKey,
) -> tuple[uuid.UUID, str]:
    """A new server whose one user ``alice`` logs in with ``key``; its id and her login."""
    server_id = await servers.create()
    row = user_row("alice", key)
    assert await push_access(agent, signing_key, http, table((server_id, [row]))) == 204
    return server_id, login_name("alice", server_id)


class RawSftp:
    """SFTP v3 spoken by hand over one session channel (what a hostile client sends)."""

    def __init__(self, writer: asyncssh.SSHWriter[bytes], reader: asyncssh.SSHReader[bytes]):
        self.writer, self.reader = writer, reader

    @classmethod
    async def start(cls, conn: asyncssh.SSHClientConnection) -> RawSftp:
        writer, reader, _ = await conn.open_session(subsystem="sftp", encoding=None)
        raw = cls(writer, reader)
        writer.write(UInt32(5) + Byte(FXP_INIT) + UInt32(3))
        await raw.packet()  # FXP_VERSION
        return raw

    def send(self, kind: int, request: int, body: bytes) -> None:
        self.writer.write(UInt32(1 + 4 + len(body)) + Byte(kind) + UInt32(request) + body)

    async def packet(self) -> bytes:
        size = int.from_bytes(await self.reader.readexactly(4), "big")
        return await self.reader.readexactly(size)

    async def open_for_reading(self, path: bytes) -> bytes:
        self.send(FXP_OPEN, 1, String(path) + UInt32(1) + UInt32(0))
        answer = await self.packet()
        assert answer[0] == FXP_HANDLE, answer
        size = int.from_bytes(answer[5:9], "big")
        return answer[9 : 9 + size]


async def test_a_500_mib_read_is_answered_with_at_most_4_mib(
    servers: LiveServers,
    live_agent: LiveAgent,
    signing_key: SigningKey,
    http: aiohttp.ClientSession,
    target: SftpTarget,
    key: UserKey,
) -> None:
    server_id, name = await granted(servers, live_agent, signing_key, http, key)
    with (servers.volume(server_id) / "sparse.bin").open("wb") as sparse:
        sparse.truncate(2 * 1024 * MIB)  # 2 GiB of nothing on disk
    async with connect(target, name, key) as conn:
        raw = await RawSftp.start(conn)
        handle = await raw.open_for_reading(b"/sparse.bin")
        before = rss_mib(live_agent)
        raw.send(FXP_READ, 2, String(handle) + UInt64(0) + UInt32(500 * MIB))
        answer = await asyncio.wait_for(raw.packet(), 30)
        grown = rss_mib(live_agent) - before
    assert answer[0] == FXP_DATA
    assert int.from_bytes(answer[5:9], "big") <= 4 * MIB  # a short read: legal SFTP
    assert grown < 32, f"the agent's RSS grew {grown:.0f} MiB for one read"


async def test_a_4_gib_packet_header_ends_the_channel_before_it_is_buffered(
    servers: LiveServers,
    live_agent: LiveAgent,
    signing_key: SigningKey,
    http: aiohttp.ClientSession,
    target: SftpTarget,
    key: UserKey,
) -> None:
    _server_id, name = await granted(servers, live_agent, signing_key, http, key)
    async with connect(target, name, key) as conn:
        raw = await RawSftp.start(conn)
        before = rss_mib(live_agent)
        raw.writer.write(UInt32(0xFFFFFFF0))
        sent = 0
        chunk = bytes(MIB)
        try:
            async with asyncio.timeout(30):
                while sent < 256 * MIB and not raw.reader.at_eof():
                    raw.writer.write(chunk)
                    await raw.writer.drain()
                    sent += len(chunk)
                assert await raw.reader.read() == b""  # the agent closed the channel
        except (asyncssh.Error, ConnectionError, BrokenPipeError):
            pass  # closed while we were still writing: as good
        grown = rss_mib(live_agent) - before
        # The connection itself is still usable: only that channel ended.
        async with conn.start_sftp_client() as sftp:
            assert await sftp.listdir("/") == []
    assert sent < 256 * MIB, "the agent kept taking one packet's bytes"
    assert grown < 32, f"the agent's RSS grew {grown:.0f} MiB"


async def test_reads_never_taken_by_the_client_do_not_pile_up_in_the_agent(
    servers: LiveServers,
    live_agent: LiveAgent,
    signing_key: SigningKey,
    http: aiohttp.ClientSession,
    target: SftpTarget,
    key: UserKey,
) -> None:
    server_id, name = await granted(servers, live_agent, signing_key, http, key)
    (servers.volume(server_id) / "data.bin").write_bytes(os.urandom(4 * MIB))
    async with connect(target, name, key) as conn:
        raws = [await RawSftp.start(conn) for _ in range(4)]
        before = rss_mib(live_agent)
        for raw in raws:  # 4 channels x 150 reads of 4 MiB: 2.4 GiB asked, none taken
            handle = await raw.open_for_reading(b"/data.bin")
            for number in range(150):
                raw.send(FXP_READ, 10 + number, String(handle) + UInt64(0) + UInt32(4 * MIB))
            await raw.writer.drain()
        await asyncio.sleep(5)
        grown = rss_mib(live_agent) - before
        # A fifth SFTP channel on the same connection is refused.
        with pytest.raises((asyncssh.Error, ConnectionError, asyncio.IncompleteReadError)):
            async with asyncio.timeout(10):
                await RawSftp.start(conn)
    # Per channel at most 8 MiB queued plus one answer; 4 channels.
    assert grown < 4 * 12 + 24, f"the agent's RSS grew {grown:.0f} MiB"


async def test_open_files_are_capped_per_connection_and_others_still_upload(
    servers: LiveServers,
    live_agent: LiveAgent,
    signing_key: SigningKey,
    http: aiohttp.ClientSession,
    target: SftpTarget,
    key: UserKey,
    tmp_path: Path,
) -> None:
    server_id = await servers.create()
    alice, bob_key = user_row("alice", key), UserKey.make(tmp_path / "bob")
    rows = [alice, user_row("bob", bob_key)]
    assert await push_access(live_agent, signing_key, http, table((server_id, rows))) == 204
    name = login_name("alice", server_id)
    (servers.volume(server_id) / "f.txt").write_bytes(b"x")
    refusals: list[str] = []
    async with connect(target, name, key) as conn, conn.start_sftp_client() as sftp:
        handles = []
        for _ in range(300):
            try:
                handles.append(await sftp.open("/f.txt", "rb"))
            except asyncssh.SFTPFailure as err:
                refusals.append(err.reason)
        assert len(handles) == 256
        assert len(refusals) == 44
        assert "too many open files" in refusals[0]

        # Meanwhile another user of the server (another account, another key) uploads.
        def upload() -> None:
            with (
                target.sftp(login_name("bob", server_id), bob_key) as bob,
                bob.open("/bob.txt", "w") as out,
            ):
                out.write(b"from bob")

        await asyncio.to_thread(upload)
        assert (servers.volume(server_id) / "bob.txt").read_bytes() == b"from bob"
        # A closed file frees its place.
        await handles.pop().close()
        handles.append(await sftp.open("/f.txt", "rb"))


def status_message(answer: bytes) -> str:
    """The message of an FXP_STATUS answer."""
    assert answer[0] == FXP_STATUS, answer[:40]
    size = int.from_bytes(answer[9:13], "big")
    return answer[13 : 13 + size].decode()


@pytest.mark.own_agent(sftp_port=free_port())  # listings of its default size (10,000)
async def test_directory_handles_and_listings_held_open_are_capped(
    servers: LiveServers,
    live_agent: LiveAgent,
    signing_key: SigningKey,
    http: aiohttp.ClientSession,
    target: SftpTarget,
    key: UserKey,
) -> None:
    """asyncssh keeps every directory handle a client opens, and one read once keeps its
    whole listing until read to the end: 200,000 handles on one channel, or 150 big listings
    read once each, took the agent from 82 MiB to 188 MiB and to 2.4 GiB."""
    server_id, name = await granted(servers, live_agent, signing_key, http, key)
    big = servers.volume(server_id) / "big"
    big.mkdir()
    for number in range(300):  # three pages of READDIR (128 names a page)
        (big / f"{number:04d}").write_bytes(b"")
    async with connect(target, name, key) as conn:
        raw = await RawSftp.start(conn)
        answers = []
        for request in range(MAX_DIRECTORY_HANDLES_PER_CHANNEL + 1):
            raw.send(FXP_OPENDIR, request, String(b"/big"))
            answers.append(await raw.packet())
        assert [a[0] for a in answers[:-1]] == [FXP_HANDLE] * MAX_DIRECTORY_HANDLES_PER_CHANNEL
        assert "too many open directories" in status_message(answers[-1])
        handles = [a[9 : 9 + int.from_bytes(a[5:9], "big")] for a in answers[:-1]]

        def read_page(handle: bytes) -> bytes:
            raw.send(FXP_READDIR, 1000, String(handle))
            return handle

        for handle in handles[: MAX_LISTINGS_PER_CONNECTION + 1]:
            read_page(handle)
            answers.append(await raw.packet())
        pages = answers[-(MAX_LISTINGS_PER_CONNECTION + 1) :]
        assert [page[0] for page in pages[:-1]] == [FXP_NAME] * MAX_LISTINGS_PER_CONNECTION
        assert "too many directories being read" in status_message(pages[-1])

        # Closing a directory being read frees its place (once its listing is let go); the
        # refused handle is spent, another one reads.
        raw.send(FXP_CLOSE, 2000, String(handles[0]))
        assert status_message(await raw.packet()) in {"", "Success"}
        unread = iter(handles[MAX_LISTINGS_PER_CONNECTION + 1 :])  # a refusal spends one
        deadline = time.monotonic() + 5
        while True:
            read_page(next(unread))
            page = await raw.packet()
            if page[0] == FXP_NAME or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        assert page[0] == FXP_NAME, status_message(page)


def passwords_each_cut_short_by_the_next(port: int, user: str, attempts: int) -> None:
    """Password attempts on one connection, each sent 10 ms after the one before: well
    within a check's scrypt, which asyncssh cancels when the next request comes."""
    # From an address of its own: the limit it runs into is per address.
    connection = socket.create_connection(("127.0.0.1", port), source_address=("127.0.7.1", 0))
    transport = paramiko.Transport(connection)
    try:
        transport.start_client(timeout=10)
        transport.auth_password(user, "wrong", event=threading.Event())  # the service request
        time.sleep(0.1)
        for number in range(attempts):
            message = Message()
            message.add_byte(bytes([MSG_USERAUTH_REQUEST]))
            message.add_string(user)
            message.add_string("ssh-connection")
            message.add_string("password")
            message.add_boolean(False)
            message.add_string(f"guess-{number}")
            transport._send_message(message)
            time.sleep(0.01)
    finally:
        transport.close()


async def test_password_attempts_cut_short_by_the_next_still_count_as_failures(
    servers: LiveServers,
    live_agent: LiveAgent,
    signing_key: SigningKey,
    http: aiohttp.ClientSession,
    target: SftpTarget,
    key: UserKey,
) -> None:
    """Each cancelled check used to release its slot and count nothing: 1,522 attempts from
    one address in 20 s were never limited (10 and one per 6 s allowed) and cost the agent
    26 s of CPU."""
    _, name = await granted(servers, live_agent, signing_key, http, key)
    refused_before = _refusals(live_agent)

    await asyncio.to_thread(passwords_each_cut_short_by_the_next, target.port, name, 100)

    # The address ran out of attempts (a burst of 10) and was refused without a check.
    assert _refusals(live_agent) > refused_before


def _refusals(agent: LiveAgent) -> int:
    return sum(
        1
        for event in agent.log_events()
        if event.get("event") == "sftp login refused: too many failures"
    )


async def test_session_channels_that_never_ask_for_sftp_are_capped_too(
    servers: LiveServers,
    live_agent: LiveAgent,
    signing_key: SigningKey,
    http: aiohttp.ClientSession,
    target: SftpTarget,
    key: UserKey,
) -> None:
    """The cap of 4 SFTP channels counted only channels that asked for SFTP: asyncssh keeps
    every session channel opened, so 40,000 that asked for nothing took 230 MiB."""
    server_id, name = await granted(servers, live_agent, signing_key, http, key)
    (servers.volume(server_id) / "f.txt").write_bytes(b"x")
    async with connect(target, name, key) as conn:
        loop = asyncio.get_running_loop()
        channels = [
            SSHClientChannel(conn, loop, "strict", None, "strict", 2 * MIB, 32768)
            for _ in range(MAX_CHANNELS_PER_CONNECTION + 12)
        ]
        opened = await asyncio.gather(
            *(channel._open(b"session") for channel in channels), return_exceptions=True
        )
        refused = [result for result in opened if isinstance(result, asyncssh.ChannelOpenError)]
        assert len(refused) == 12, opened
        assert "channels per connection" in refused[0].reason
        for channel, result in zip(channels, opened, strict=True):
            if not isinstance(result, BaseException):
                channel.close()
        await asyncio.sleep(0.5)  # the agent sees them closed
        async with conn.start_sftp_client() as sftp, sftp.open("/f.txt", "rb") as opened_file:
            data = cast(bytes, await opened_file.read())  # binary mode: bytes, typed str
            assert data == b"x"


async def test_idle_sockets_from_many_addresses_do_not_stop_a_login(
    servers: LiveServers,
    live_agent: LiveAgent,
    signing_key: SigningKey,
    http: aiohttp.ClientSession,
    target: SftpTarget,
    key: UserKey,
) -> None:
    _server_id, name = await granted(servers, live_agent, signing_key, http, key)
    idle: list[socket.socket] = []
    try:
        for address in range(1, 65):  # 64 addresses x 16 sockets, not one SSH byte sent
            for _ in range(16):
                sock = socket.socket()
                sock.bind((f"127.4.0.{address}", 0))
                sock.connect(("127.0.0.1", target.port))
                idle.append(sock)
        await asyncio.sleep(1)
        started = time.monotonic()
        async with (
            connect(target, name, key, source="127.4.1.1") as conn,
            conn.start_sftp_client() as sftp,
        ):
            await sftp.listdir("/")
        assert time.monotonic() - started < 10
    finally:
        for sock in idle:
            sock.close()


def closed_by_agent(sock: socket.socket) -> bool:
    """Whether the agent ended this connection (what it sent first, its banner, is skipped)."""
    sock.settimeout(0.2)
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        return False
    except OSError:
        return True
    return True


async def test_an_address_may_have_4_logins_pending_and_they_end_after_10_s(
    target: SftpTarget,
) -> None:
    socks = []
    try:
        for _ in range(6):
            sock = socket.socket()
            sock.bind(("127.4.2.1", 0))
            sock.connect(("127.0.0.1", target.port))
            socks.append(sock)
        await asyncio.sleep(0.5)
        closed = await asyncio.to_thread(lambda: [closed_by_agent(s) for s in socks])
        assert closed == [False] * 4 + [True] * 2
        await asyncio.sleep(11)  # the login deadline
        closed = await asyncio.to_thread(lambda: [closed_by_agent(s) for s in socks[:4]])
        assert closed == [True] * 4
    finally:
        for sock in socks:
            sock.close()


async def test_asyncssh_downloads_and_uploads_including_a_sparse_file(
    servers: LiveServers,
    live_agent: LiveAgent,
    signing_key: SigningKey,
    http: aiohttp.ClientSession,
    target: SftpTarget,
    key: UserKey,
    tmp_path: Path,
) -> None:
    server_id, name = await granted(servers, live_agent, signing_key, http, key)
    volume = servers.volume(server_id)
    content = os.urandom(3 * MIB + 17)
    (volume / "world.dat").write_bytes(content)
    with (volume / "sparse.dat").open("wb") as sparse:
        sparse.seek(8 * MIB)
        sparse.write(b"end")
    up = tmp_path / "up.bin"
    up.write_bytes(os.urandom(MIB + 5))
    async with connect(target, name, key) as conn, conn.start_sftp_client() as sftp:
        await sftp.get("/world.dat", str(tmp_path / "world.dat"))
        await sftp.get("/sparse.dat", str(tmp_path / "sparse.dat"))
        await sftp.put(str(up), "/up.bin")
    assert (tmp_path / "world.dat").read_bytes() == content
    assert (tmp_path / "sparse.dat").read_bytes() == bytes(8 * MIB) + b"end"
    assert (volume / "up.bin").read_bytes() == up.read_bytes()


async def test_an_upload_open_when_files_write_is_revoked_is_not_saved(
    servers: LiveServers,
    live_agent: LiveAgent,
    signing_key: SigningKey,
    http: aiohttp.ClientSession,
    target: SftpTarget,
    key: UserKey,
) -> None:
    server_id = await servers.create()
    user_id = uuid.uuid4()
    full = user_row("alice", key, user_id=user_id)
    assert await push_access(live_agent, signing_key, http, table((server_id, [full]))) == 204
    config = servers.volume(server_id) / "server.properties"
    config.write_text("motd=original\n")
    async with (
        connect(target, login_name("alice", server_id), key) as conn,
        conn.start_sftp_client() as sftp,
    ):
        upload = await sftp.open("/server.properties", "wb")
        await upload.write(b"motd=attacker\n")
        read_only = user_row("alice", key, frozenset({"files.read"}), user_id=user_id)
        after = table((server_id, [read_only]))
        assert await push_access(live_agent, signing_key, http, after) == 204
        with pytest.raises(asyncssh.SFTPPermissionDenied):
            await upload.write(b"more")
        with pytest.raises(asyncssh.SFTPPermissionDenied, match="not saved"):
            await upload.close()
        assert "server.properties" in await sftp.listdir("/")  # still logged in, read-only
    assert config.read_text() == "motd=original\n"
    assert [n for n in os.listdir(config.parent) if n.startswith(".stellar-write-")] == []


async def test_a_listing_past_the_limit_is_refused_not_cut_short(
    servers: LiveServers,
    live_agent: LiveAgent,
    signing_key: SigningKey,
    http: aiohttp.ClientSession,
    target: SftpTarget,
    key: UserKey,
) -> None:
    server_id, name = await granted(servers, live_agent, signing_key, http, key)
    crowded = servers.volume(server_id) / "crowded"
    crowded.mkdir()
    for number in range(LIST_LIMIT + 1):
        (crowded / f"f{number}").write_bytes(b"")
    async with connect(target, name, key) as conn, conn.start_sftp_client() as sftp:
        with pytest.raises(asyncssh.SFTPFailure, match="more than"):
            await sftp.listdir("/crowded")
        (crowded / "f0").unlink()
        assert len(await sftp.listdir("/crowded")) == LIST_LIMIT
