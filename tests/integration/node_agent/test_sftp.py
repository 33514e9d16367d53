"""SFTP into a server's files with real clients (paramiko, OpenSSH ``sftp -b``), public keys.

One agent with its SFTP listener on; each test pushes the access table it needs, signed as the
control plane does, and makes servers (their volumes) through the signed API. Traps are
planted in the volume on the host; a marker outside it proves nothing leaked.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import secrets
import shutil
import stat
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
import asyncssh
import paramiko
import pytest

from shared.sftp_passwords import hash_password, new_password
from tests.integration.node_agent.backups_client import BackupsClient, new_key
from tests.integration.node_agent.files_client import FilesClient, in_game
from tests.integration.node_agent.live_agent import LiveAgent, LiveServers, start_live_agent
from tests.integration.node_agent.sftp_client import (
    SftpTarget,
    UserKey,
    connect,
    push_access,
    sftp_target,
    table,
    user_row,
    username,
)
from tests.support.agent_process import SigningKey, free_port

pytestmark = [pytest.mark.docker, pytest.mark.timeout(300)]
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def module_live_agent(
    tmp_path_factory: pytest.TempPathFactory, signing_key: SigningKey
) -> Iterator[LiveAgent]:
    """This module's agent: the live one, with SFTP on a free port."""
    agent = start_live_agent(
        tmp_path_factory.mktemp("sftp-agent"), signing_key, sftp_port=free_port()
    )
    try:
        yield agent
    finally:
        agent.stop()


@pytest.fixture
def host_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "host"
    directory.mkdir()
    (directory / "marker.txt").write_bytes(b"host secret\n")
    return directory


def random_file(path: Path, size: int) -> str:
    """Write ``size`` random bytes; their SHA-256."""
    digest = hashlib.sha256()
    with path.open("wb") as out:
        left = size
        while left:
            chunk = os.urandom(min(left, 4 * MIB))
            out.write(chunk)
            digest.update(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(4 * MIB):
            digest.update(chunk)
    return digest.hexdigest()


async def test_the_host_key_is_made_once_and_shown_by_the_system_info(
    live_agent: LiveAgent, target: SftpTarget
) -> None:
    key_file = live_agent.data_dir / "sftp_host_ed25519_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert target.host_key.startswith("ssh-ed25519 ")
    # The key the listener presents is the one shown: paramiko's RejectPolicy would refuse
    # any other (known_hosts holds only the shown key).
    transport = paramiko.Transport(("127.0.0.1", target.port))
    try:
        transport.start_client(timeout=10)
        presented = transport.get_remote_server_key()
    finally:
        transport.close()
    assert f"{presented.get_name()} {presented.get_base64()}" == target.host_key
    fingerprint = hashlib.sha256(presented.asbytes()).digest()
    assert target.fingerprint == "SHA256:" + base64.b64encode(fingerprint).decode().rstrip("=")


async def test_paramiko_uploads_downloads_renames_lists_and_deletes(
    servers: LiveServers,
    live_agent: LiveAgent,
    signing_key: SigningKey,
    http: aiohttp.ClientSession,
    target: SftpTarget,
    key: UserKey,
    tmp_path: Path,
) -> None:
    server_id = await servers.create()
    assert (
        await push_access(
            live_agent, signing_key, http, table((server_id, [user_row("alice", key)]))
        )
        == 204
    )
    source = tmp_path / "upload.bin"
    digest = random_file(source, 64 * MIB)
    back = tmp_path / "download.bin"

    def session() -> list[str]:
        with target.sftp(username("alice", server_id), key) as sftp:
            sftp.mkdir("/worlds")
            sftp.put(str(source), "/worlds/world.bin")
            sftp.rename("/worlds/world.bin", "/worlds/renamed.bin")
            sftp.get("/worlds/renamed.bin", str(back))
            names = sorted(sftp.listdir("/worlds"))
            sftp.remove("/worlds/renamed.bin")
            sftp.rmdir("/worlds")
            return names

    names = await asyncio.to_thread(session)
    assert names == ["renamed.bin"]
    assert sha256(back) == digest
    assert not (live_agent.volume(server_id) / "worlds").exists()


async def test_openssh_sftp_in_batch_mode(
    servers: LiveServers,
    live_agent: LiveAgent,
    signing_key: SigningKey,
    http: aiohttp.ClientSession,
    target: SftpTarget,
    key: UserKey,
    tmp_path: Path,
) -> None:
    server_id = await servers.create()
    await push_access(live_agent, signing_key, http, table((server_id, [user_row("bob", key)])))
    digest = random_file(tmp_path / "mod.jar", 8 * MIB)
    commands = "\n".join(
        [
            "mkdir plugins",
            "put mod.jar plugins/mod.jar",
            "rename plugins/mod.jar plugins/renamed.jar",
            "chmod 600 plugins/renamed.jar",
            "ls -l plugins",
            "get plugins/renamed.jar back.jar",
            "-symlink plugins/renamed.jar link.jar",
            "rm plugins/renamed.jar",
            "rmdir plugins",
            "ls",
        ]
    )
    result = await target.openssh_batch(username("bob", server_id), key, commands, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "renamed.jar" in result.stdout
    assert "-rw-------" in result.stdout
    assert sha256(tmp_path / "back.jar") == digest
    assert "symlink" in result.stderr.lower() or "permission denied" in result.stderr.lower()
    assert sorted(os.listdir(live_agent.volume(server_id))) == []


async def test_traps_in_the_volume_hold_over_sftp(
    servers: LiveServers,
    live_agent: LiveAgent,
    signing_key: SigningKey,
    http: aiohttp.ClientSession,
    target: SftpTarget,
    key: UserKey,
    host_dir: Path,
) -> None:
    server_id = await servers.create(file_denylist=["secret.cfg"])
    volume = live_agent.volume(server_id)
    # What a game could plant: links to host files and to /, a FIFO, a deny-listed file.
    os.symlink("/etc/passwd", volume / "passwd")
    os.symlink("/", volume / "root")
    os.symlink(host_dir / "marker.txt", volume / "marker")
    os.mkfifo(volume / "fifo")
    (volume / "secret.cfg").write_text("rcon=hunter2\n")
    await push_access(live_agent, signing_key, http, table((server_id, [user_row("carol", key)])))

    def attempts() -> dict[str, str]:
        refused: dict[str, str] = {}

        def attempt(name: str, action: object) -> None:
            try:
                action()  # type: ignore[operator]
            except OSError as err:
                refused[name] = type(err).__name__
            else:
                refused[name] = "allowed"

        with target.sftp(username("carol", server_id), key) as sftp:
            attempt("read link to /etc/passwd", lambda: sftp.open("/passwd").read())
            attempt("list through link to /", lambda: sftp.listdir("/root/etc"))
            attempt("read through link to /", lambda: sftp.open("/root/etc/passwd").read())
            attempt("write through link", lambda: sftp.open("/marker", "w").write(b"x"))
            attempt("chmod link", lambda: sftp.chmod("/marker", 0o777))
            attempt("dot-dot", lambda: sftp.open("/../../../etc/passwd").read())
            attempt("relative dot-dot", lambda: sftp.listdir("../.."))
            attempt("fifo", lambda: sftp.open("/fifo").read())
            attempt("deny-listed read", lambda: sftp.open("/secret.cfg").read())
            attempt("deny-listed write", lambda: sftp.open("/secret.cfg", "w").write(b"x"))
            attempt("symlink", lambda: sftp.symlink("/etc/shadow", "/shadow"))
            attempt("long name", lambda: sftp.open("/" + "a" * 300, "w").write(b"x"))
            listed = {a.filename: a.st_mode for a in sftp.listdir_attr("/")}
        assert stat.S_ISLNK(listed["passwd"] or 0)
        assert "secret.cfg" not in listed
        return refused

    refused = await asyncio.to_thread(attempts)
    assert all(outcome != "allowed" for outcome in refused.values()), refused
    assert (host_dir / "marker.txt").read_bytes() == b"host secret\n"
    assert stat.S_IMODE((host_dir / "marker.txt").stat().st_mode) != 0o777
    assert not (volume / "shadow").exists()
    assert not (volume / "shadow").is_symlink()
    assert (volume / "secret.cfg").read_text() == "rcon=hunter2\n"


async def test_each_operation_needs_its_permission(
    servers: LiveServers,
    live_agent: LiveAgent,
    signing_key: SigningKey,
    http: aiohttp.ClientSession,
    target: SftpTarget,
    key: UserKey,
) -> None:
    server_id = await servers.create()
    volume = live_agent.volume(server_id)
    (volume / "server.properties").write_text("motd=hi\n")
    reader = user_row("reader", key, frozenset({"files.read"}))
    await push_access(live_agent, signing_key, http, table((server_id, [reader])))

    def session() -> tuple[bytes, list[str]]:
        denied: list[str] = []
        with target.sftp(username("reader", server_id), key) as sftp:
            content = sftp.open("/server.properties").read()
            attempts: list[tuple[str, Callable[[], object]]] = [
                ("write", lambda: sftp.open("/server.properties", "w").write(b"x")),
                ("mkdir", lambda: sftp.mkdir("/new")),
                ("rename", lambda: sftp.rename("/server.properties", "/other")),
                ("remove", lambda: sftp.remove("/server.properties")),
            ]
            for name, action in attempts:
                try:
                    action()
                except PermissionError:
                    denied.append(name)
        return content, denied

    content, denied = await asyncio.to_thread(session)
    assert content == b"motd=hi\n"
    assert denied == ["write", "mkdir", "rename", "remove"]
    assert sorted(os.listdir(volume)) == ["server.properties"]
    assert (volume / "server.properties").read_text() == "motd=hi\n"


def _refusal(action: Callable[[], object]) -> str | None:
    """The message of the PermissionError ``action`` ends with; None if it succeeds."""
    try:
        action()
    except PermissionError as err:
        return str(err)
    return None


def _error(action: Callable[[], object]) -> str | None:
    """What a file that does not exist (or is in a folder that does not) was refused with."""
    try:
        action()
    except FileNotFoundError as err:
        return str(err)
    return None


def _put(sftp: paramiko.SFTPClient, path: str, data: bytes, mode: str = "w") -> None:
    with sftp.open(path, mode) as remote:
        remote.write(data)


async def test_making_a_file_needs_files_create_and_changing_one_needs_files_write(
    servers: LiveServers,
    live_agent: LiveAgent,
    signing_key: SigningKey,
    http: aiohttp.ClientSession,
    target: SftpTarget,
    key: UserKey,
) -> None:
    """As over HTTP: a sub-user who may change files but not create them cannot make a new
    file or folder by opening a name for writing, and one who may create files (upload) but
    not change them cannot overwrite, truncate or append to a file that is there."""
    server_id = await servers.create()
    volume = live_agent.volume(server_id)
    (volume / "server.properties").write_text("motd=hi\n")
    editor = user_row("editor", key, frozenset({"files.read", "files.write"}))
    uploader = user_row("uploader", key, frozenset({"files.read", "files.create"}))
    await push_access(live_agent, signing_key, http, table((server_id, [editor, uploader])))

    def as_editor() -> dict[str, str | None]:
        with target.sftp(username("editor", server_id), key) as sftp:
            return {
                "edit": _refusal(lambda: _put(sftp, "/server.properties", b"motd=edited\n")),
                "new file": _refusal(lambda: _put(sftp, "/plugin.jar", b"payload")),
                "new file, exclusive": _refusal(lambda: _put(sftp, "/p2.jar", b"p", "wx")),
                "append to new": _refusal(lambda: _put(sftp, "/p3.jar", b"p", "a")),
                "mkdir": _refusal(lambda: sftp.mkdir("/plugins")),
                "in a missing folder": _error(lambda: _put(sftp, "/nowhere/new.jar", b"p")),
            }

    refused = await asyncio.to_thread(as_editor)
    assert refused["edit"] is None
    for attempt in ("new file", "new file, exclusive", "append to new", "mkdir"):
        assert "files.create" in (refused[attempt] or ""), attempt
    # The folder is the first problem there: the refusal says so, not the permission.
    assert refused["in a missing folder"] is not None
    assert "files.create" not in refused["in a missing folder"]
    assert sorted(os.listdir(volume)) == ["server.properties"]
    assert (volume / "server.properties").read_text() == "motd=edited\n"

    def as_uploader() -> dict[str, str | None]:
        with target.sftp(username("uploader", server_id), key) as sftp:
            refusals = {
                "overwrite": _refusal(lambda: _put(sftp, "/server.properties", b"motd=x\n")),
                "append": _refusal(lambda: _put(sftp, "/server.properties", b"x", "a")),
                "in place": _refusal(lambda: _put(sftp, "/server.properties", b"x", "r+")),
                "new file": _refusal(lambda: _put(sftp, "/world.zip", b"a world")),
                "mkdir": _refusal(lambda: sftp.mkdir("/worlds")),
            }
            # The new file is the uploader's to finish: its size and times may be set while
            # it is open (clients preserving times do so), not once it is closed.
            with sftp.open("/worlds/new.txt", "w") as remote:
                remote.write(b"draft")
                remote.truncate(2)
                remote.utime((1_000_000, 1_000_000))
            refusals["chmod"] = _refusal(lambda: sftp.chmod("/worlds/new.txt", 0o600))
            return refusals

    refused = await asyncio.to_thread(as_uploader)
    for attempt in ("overwrite", "append", "in place", "chmod"):
        assert "files.write" in (refused[attempt] or ""), attempt
    assert refused["new file"] is None
    assert refused["mkdir"] is None
    assert (volume / "server.properties").read_text() == "motd=edited\n"
    assert (volume / "world.zip").read_bytes() == b"a world"
    assert (volume / "worlds" / "new.txt").read_bytes() == b"dr"
    assert (volume / "worlds" / "new.txt").stat().st_mtime == 1_000_000


async def test_a_file_removed_while_being_changed_is_not_made_again(
    servers: LiveServers,
    live_agent: LiveAgent,
    signing_key: SigningKey,
    http: aiohttp.ClientSession,
    target: SftpTarget,
    key: UserKey,
) -> None:
    """The race of the rule above: one who may change (and delete) files but not create them
    opens a file to overwrite it, the file goes (they, or the game, delete it), and the
    close would put it back. It does not: the new version only ever takes the place of the
    file that is there (renameat2's exchange), and a directory that took its name keeps it."""
    server_id = await servers.create()
    volume = live_agent.volume(server_id)
    (volume / "ops.json").write_text("[]")
    (volume / "bans.json").write_text("[]")
    editor = user_row("editor", key, frozenset({"files.read", "files.write", "files.delete"}))
    await push_access(live_agent, signing_key, http, table((server_id, [editor])))
    async with (
        connect(target, username("editor", server_id), key) as conn,
        conn.start_sftp_client() as sftp,
    ):
        remote = await sftp.open("/ops.json", "wb")
        await remote.write(b'["attacker"]')
        await sftp.remove("/ops.json")
        with pytest.raises(asyncssh.SFTPNoSuchFile, match="does not exist"):
            await remote.close()
        remote = await sftp.open("/bans.json", "wb")
        await remote.write(b"[]")
        (volume / "bans.json").unlink()
        (volume / "bans.json").mkdir()
        with pytest.raises(asyncssh.SFTPFailure, match="is a directory"):
            await remote.close()
    assert sorted(os.listdir(volume)) == ["bans.json"]
    assert (volume / "bans.json").is_dir()


async def test_a_write_ends_as_the_permissions_are_when_it_ends(
    servers: LiveServers,
    live_agent: LiveAgent,
    signing_key: SigningKey,
    http: aiohttp.ClientSession,
    target: SftpTarget,
    key: UserKey,
) -> None:
    """Writes opened while the user held files.create and files.write, one of them taken
    away before the close: without files.write the new file does not replace one that
    appeared meanwhile; without files.create a replaced file that went is not made again."""
    server_id = await servers.create()
    volume = live_agent.volume(server_id)
    (volume / "ops.json").write_text("[]")
    both = frozenset({"files.read", "files.write", "files.create"})
    user_id = uuid.uuid4()

    async def grant(permissions: frozenset[str]) -> None:
        row = user_row("editor", key, permissions, user_id=user_id)
        await push_access(live_agent, signing_key, http, table((server_id, [row])))

    await grant(both)
    async with (
        connect(target, username("editor", server_id), key) as conn,
        conn.start_sftp_client() as sftp,
    ):
        new = await sftp.open("/world.dat", "wb")
        await new.write(b"from sftp")
        await grant(frozenset({"files.read", "files.create"}))
        (volume / "world.dat").write_text("the game's")
        with pytest.raises(asyncssh.SFTPFailure, match="exists already"):  # SFTP v3's code
            await new.close()
        await grant(both)
        changed = await sftp.open("/ops.json", "wb")
        await changed.write(b'["attacker"]')
        await grant(frozenset({"files.read", "files.write"}))
        (volume / "ops.json").unlink()
        with pytest.raises(asyncssh.SFTPNoSuchFile, match="does not exist"):
            await changed.close()
    assert sorted(os.listdir(volume)) == ["world.dat"]
    assert (volume / "world.dat").read_text() == "the game's"


async def test_a_write_in_progress_cannot_be_taken_under_a_new_name(
    servers: LiveServers,
    live_agent: LiveAgent,
    signing_key: SigningKey,
    http: aiohttp.ClientSession,
    target: SftpTarget,
    key: UserKey,
) -> None:
    """A write that replaces a file goes to a temporary file beside it. One who may change
    files but not create them renames that (renaming takes files.write) to a new name and
    writes on through the open handle: a file made without files.create. The agent's
    temporary names are neither listed nor usable in any path."""
    server_id = await servers.create()
    volume = live_agent.volume(server_id)
    (volume / "ops.json").write_text("[]")
    editor = user_row("editor", key, frozenset({"files.read", "files.write", "files.delete"}))
    await push_access(live_agent, signing_key, http, table((server_id, [editor])))
    async with (
        connect(target, username("editor", server_id), key) as conn,
        conn.start_sftp_client() as sftp,
    ):
        remote = await sftp.open("/ops.json", "wb")
        await remote.write(b"[]")
        listed = await sftp.listdir("/")
        temp = next(p.name for p in volume.iterdir() if p.name.startswith(".stellar-write-"))
        refusals: list[str] = []
        for attempt in (
            sftp.rename(f"/{temp}", "/plugin.jar"),
            sftp.posix_rename(f"/{temp}", "/plugin.jar"),
            sftp.stat(f"/{temp}"),
            sftp.remove(f"/{temp}"),
            sftp.chmod(f"/{temp}", 0o755),
        ):
            with pytest.raises(asyncssh.SFTPError) as refused:
                await attempt
            refusals.append(str(refused.value.reason))
        await remote.write(b"payload", 2)
        await remote.close()
    assert temp not in listed
    assert all("being written" in reason for reason in refusals), refusals
    assert sorted(os.listdir(volume)) == ["ops.json"]
    assert (volume / "ops.json").read_bytes() == b"[]payload"


async def test_a_wrong_key_an_unknown_account_and_another_server_are_refused(
    servers: LiveServers,
    live_agent: LiveAgent,
    signing_key: SigningKey,
    http: aiohttp.ClientSession,
    target: SftpTarget,
    key: UserKey,
    tmp_path: Path,
) -> None:
    mine, other = await servers.create(), await servers.create()
    stranger = UserKey.make(tmp_path / "stranger")
    await push_access(live_agent, signing_key, http, table((mine, [user_row("dave", key)])))
    for name, login_key in [
        (username("dave", mine), stranger),
        (username("nobody", mine), key),
        (username("dave", other), key),
        ("dave", key),
    ]:
        with pytest.raises(paramiko.AuthenticationException):
            await asyncio.to_thread(target.ssh_client, name, login_key)


def request_with_reply(channel: paramiko.Channel, name: str) -> None:
    """A channel request that asks for an answer (paramiko sends agent forwarding without)."""
    message = paramiko.Message()
    message.add_byte(paramiko.common.cMSG_CHANNEL_REQUEST)
    message.add_int(channel.remote_chanid)
    message.add_string(name)
    message.add_boolean(True)
    channel._event_pending()
    channel.transport._send_user_message(message)
    channel._wait_for_event()


async def test_no_shell_exec_pty_or_forwarding(
    servers: LiveServers,
    live_agent: LiveAgent,
    signing_key: SigningKey,
    http: aiohttp.ClientSession,
    target: SftpTarget,
    key: UserKey,
) -> None:
    server_id = await servers.create()
    await push_access(live_agent, signing_key, http, table((server_id, [user_row("erin", key)])))

    def attempts() -> dict[str, str]:
        outcomes: dict[str, str] = {}
        client = target.ssh_client(username("erin", server_id), key)
        transport = client.get_transport()
        assert transport is not None
        try:
            requests: list[tuple[str, Callable[[paramiko.Channel], object]]] = [
                ("shell", lambda ch: ch.invoke_shell()),
                ("exec", lambda ch: ch.exec_command("id")),
                ("pty", lambda ch: ch.get_pty()),
                ("x11", lambda ch: ch.request_x11()),
                ("agent", lambda ch: request_with_reply(ch, "auth-agent-req@openssh.com")),
                ("other subsystem", lambda ch: ch.invoke_subsystem("netconf")),
            ]
            for name, request in requests:
                channel = transport.open_session(timeout=10)
                try:
                    request(channel)
                except paramiko.SSHException as err:
                    outcomes[name] = f"refused: {err}"
                else:
                    outcomes[name] = "allowed"
                finally:
                    channel.close()
            try:
                transport.open_channel(
                    "direct-tcpip", ("127.0.0.1", live_agent.port), ("127.0.0.1", 5555), timeout=10
                )
                outcomes["local forward"] = "allowed"
            except (paramiko.ChannelException, paramiko.SSHException) as err:
                outcomes["local forward"] = f"refused: {err}"
            try:
                transport.request_port_forward("127.0.0.1", 0)
                outcomes["remote forward"] = "allowed"
            except paramiko.SSHException as err:
                outcomes["remote forward"] = f"refused: {err}"
        finally:
            client.close()
        return outcomes

    outcomes = await asyncio.to_thread(attempts)
    assert {n: o.split(":")[0] for n, o in outcomes.items()} == dict.fromkeys(
        outcomes, "refused"
    ), outcomes


@pytest.mark.parametrize("change", ["key removed", "permission revoked", "server suspended"])
async def test_an_open_session_ends_within_5_seconds_of_losing_access(
    servers: LiveServers,
    live_agent: LiveAgent,
    signing_key: SigningKey,
    http: aiohttp.ClientSession,
    target: SftpTarget,
    key: UserKey,
    tmp_path: Path,
    change: str,
) -> None:
    server_id = await servers.create()
    user_id = uuid.uuid4()
    row = user_row("frank", key, user_id=user_id)
    other_key = UserKey.make(tmp_path / "other")
    await push_access(live_agent, signing_key, http, table((server_id, [row])))
    client = await asyncio.to_thread(target.ssh_client, username("frank", server_id), key)
    try:
        sftp = await asyncio.to_thread(client.open_sftp)
        assert await asyncio.to_thread(sftp.listdir, "/") == []
        if change == "key removed":
            after = table((server_id, [user_row("frank", other_key, user_id=user_id)]))
        elif change == "permission revoked":
            after = table((server_id, []))
        else:
            after = table()  # a suspended server has no row
        started = time.monotonic()
        assert await push_access(live_agent, signing_key, http, after) == 204
        transport = client.get_transport()
        assert transport is not None
        while transport.is_active() and time.monotonic() - started < 5:
            await asyncio.sleep(0.05)
        assert not transport.is_active(), "the session is still open 5 s later"
        with pytest.raises((OSError, EOFError, paramiko.SSHException)):
            await asyncio.to_thread(sftp.listdir, "/")
    finally:
        client.close()


async def test_an_interrupted_upload_keeps_the_old_file_and_a_resume_appends(
    servers: LiveServers,
    live_agent: LiveAgent,
    signing_key: SigningKey,
    http: aiohttp.ClientSession,
    target: SftpTarget,
    key: UserKey,
) -> None:
    server_id = await servers.create()
    volume = live_agent.volume(server_id)
    (volume / "world.dat").write_bytes(b"old world")
    await push_access(live_agent, signing_key, http, table((server_id, [user_row("gina", key)])))
    payload = secrets.token_bytes(3 * MIB)

    def interrupted() -> None:
        client = target.ssh_client(username("gina", server_id), key)
        sftp = client.open_sftp()
        handle = sftp.open("/world.dat", "w")
        handle.write(payload[: 2 * MIB])
        handle.flush()
        client.close()  # the connection drops before the file is closed

    await asyncio.to_thread(interrupted)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(
        n.startswith(".stellar-write-") for n in os.listdir(volume)
    ):
        await asyncio.sleep(0.05)
    assert (volume / "world.dat").read_bytes() == b"old world"
    assert sorted(os.listdir(volume)) == ["world.dat"]

    def resumed() -> None:
        with target.sftp(username("gina", server_id), key) as sftp:
            with sftp.open("/part.bin", "w") as first:
                first.write(payload[:MIB])
            with sftp.open("/part.bin", "a") as rest:  # resume: no truncation
                rest.write(payload[MIB:])

    await asyncio.to_thread(resumed)
    assert (volume / "part.bin").read_bytes() == payload


@pytest.mark.slow
async def test_one_gib_up_and_down_and_a_resumed_upload_with_openssh(
    servers: LiveServers,
    live_agent: LiveAgent,
    signing_key: SigningKey,
    http: aiohttp.ClientSession,
    target: SftpTarget,
    key: UserKey,
    tmp_path: Path,
) -> None:
    server_id = await servers.create(disk_mib=4096)
    volume = live_agent.volume(server_id)
    await push_access(live_agent, signing_key, http, table((server_id, [user_row("hugo", key)])))
    digest = random_file(tmp_path / "world.bin", 1024 * MIB)
    # Half of it already there, as an interrupted upload leaves it; reput sends the rest.
    with (tmp_path / "world.bin").open("rb") as source:
        (volume / "resumed.bin").write_bytes(source.read(512 * MIB))
    commands = "\n".join(
        ["put world.bin world.bin", "get world.bin back.bin", "reput world.bin resumed.bin"]
    )
    result = await target.openssh_batch(username("hugo", server_id), key, commands, tmp_path)
    assert result.returncode == 0, result.stderr
    assert sha256(volume / "world.bin") == digest
    assert sha256(tmp_path / "back.bin") == digest
    assert sha256(volume / "resumed.bin") == digest


@pytest.mark.slow
async def test_one_gib_up_and_down_and_an_interrupted_upload_resumed_with_paramiko(
    servers: LiveServers,
    live_agent: LiveAgent,
    signing_key: SigningKey,
    http: aiohttp.ClientSession,
    target: SftpTarget,
    key: UserKey,
    tmp_path: Path,
) -> None:
    server_id = await servers.create(disk_mib=4096)
    volume = live_agent.volume(server_id)
    await push_access(live_agent, signing_key, http, table((server_id, [user_row("iris", key)])))
    name = username("iris", server_id)
    source = tmp_path / "world.bin"
    digest = random_file(source, 1024 * MIB)

    def round_trip() -> None:
        with target.sftp(name, key) as sftp:
            sftp.put(str(source), "/world.bin")
            sftp.get("/world.bin", str(tmp_path / "back.bin"))

    await asyncio.to_thread(round_trip)
    assert sha256(volume / "world.bin") == digest
    assert sha256(tmp_path / "back.bin") == digest
    (tmp_path / "back.bin").unlink()

    def interrupted() -> int:
        """The first 256 MiB, then a resume of it that loses its connection at 640 MiB;
        what the agent kept (its size on the server)."""
        with (
            target.sftp(name, key) as sftp,
            source.open("rb") as data,
            sftp.open("/resumed.bin", "w") as first,
        ):
            first.set_pipelined(True)
            for _ in range(256):
                first.write(data.read(MIB))
        client = target.ssh_client(name, key)
        sftp = client.open_sftp()
        with source.open("rb") as data:
            data.seek(256 * MIB)
            handle = sftp.open("/resumed.bin", "a")  # in place: what arrives stays
            handle.set_pipelined(True)
            for _ in range(384):
                handle.write(data.read(MIB))
            client.close()  # dropped: writes in flight are lost, the file is never closed
        with target.sftp(name, key) as sftp:
            size: int = sftp.stat("/resumed.bin").st_size or 0
        return size

    kept = await asyncio.to_thread(interrupted)
    assert 256 * MIB < kept <= 640 * MIB

    def resume() -> None:
        """As a client resumes: append from the size the server has."""
        with target.sftp(name, key) as sftp, source.open("rb") as data:
            remote = sftp.stat("/resumed.bin").st_size or 0
            data.seek(remote)
            with sftp.open("/resumed.bin", "a") as rest:
                rest.set_pipelined(True)
                while chunk := data.read(MIB):
                    rest.write(chunk)

    await asyncio.to_thread(resume)
    assert sha256(volume / "resumed.bin") == digest


async def test_a_restore_ends_open_sessions_and_refuses_new_requests_until_done(
    servers: LiveServers,
    live_agent: LiveAgent,
    signing_key: SigningKey,
    http: aiohttp.ClientSession,
    target: SftpTarget,
    key: UserKey,
    api: FilesClient,
) -> None:
    backups = BackupsClient(api)
    server_id = await servers.create()
    volume = live_agent.volume(server_id)
    (volume / "world.dat").write_bytes(b"saved\n")
    backup_key = new_key()
    backup_id, answer = await backups.create(server_id, backup_key)
    assert answer.status == 202, answer
    assert (await backups.finished(server_id, backup_id))["status"] == "completed"
    await push_access(live_agent, signing_key, http, table((server_id, [user_row("kim", key)])))
    client = await asyncio.to_thread(target.ssh_client, username("kim", server_id), key)
    try:
        sftp = await asyncio.to_thread(client.open_sftp)
        handle = await asyncio.to_thread(sftp.open, "/world.dat", "r+")
        started = time.monotonic()
        assert (await backups.restore(server_id, backup_id, backup_key)).status == 202
        transport = client.get_transport()
        assert transport is not None
        while transport.is_active() and time.monotonic() - started < 5:
            await asyncio.sleep(0.05)
        assert not transport.is_active(), "the session outlived the restore's start"
        with pytest.raises((OSError, EOFError, paramiko.SSHException)):
            await asyncio.to_thread(handle.write, b"into the old volume")
    finally:
        client.close()
    assert (await backups.restored(server_id, backup_id))["status"] == "completed"
    assert (volume / "world.dat").read_bytes() == b"saved\n"
    shutil.rmtree(live_agent.data_dir / "backups", ignore_errors=True)


async def test_a_parent_swapped_for_a_link_to_root_never_lets_an_sftp_write_out(
    servers: LiveServers,
    live_agent: LiveAgent,
    signing_key: SigningKey,
    http: aiohttp.ClientSession,
    target: SftpTarget,
    key: UserKey,
) -> None:
    """The game swaps ``d`` between a directory and a link to ``/`` during 1,000 uploads,
    1,000 reads and 1,000 mkdirs over SFTP."""
    server_id = await servers.started()
    in_game(
        server_id,
        "cd /home/container && while :; do rm -rf d; mkdir d; rm -rf d; ln -s / d; done",
        detach=True,
    )
    await push_access(live_agent, signing_key, http, table((server_id, [user_row("lee", key)])))
    tag = f"stellar-race-{secrets.token_hex(6)}"

    def race() -> dict[str, int]:
        outcomes: dict[str, int] = {}

        def count(action: Callable[[], object]) -> None:
            try:
                action()
                outcome = "done"
            except PermissionError:
                outcome = "refused"
            except OSError as err:
                outcome = type(err).__name__
            outcomes[outcome] = outcomes.get(outcome, 0) + 1

        with target.sftp(username("lee", server_id), key) as sftp:
            for index in range(1000):
                count(lambda i=index: sftp.open(f"/d/{tag}-{i}", "w").write(b"race"))  # type: ignore[misc]
                count(lambda: sftp.open("/d/etc/passwd").read())
                count(lambda i=index: sftp.mkdir(f"/d/{tag}-dir-{i}"))  # type: ignore[misc]
        return outcomes

    outcomes = await asyncio.to_thread(race)
    in_game(server_id, "pkill -f 'rm -rf d' || true")
    assert sum(outcomes.values()) == 3000
    assert outcomes.get("refused", 0) > 0, outcomes  # the link was really there, and refused
    assert outcomes.get("done", 0) > 0, outcomes  # and so was the directory
    assert set(outcomes) <= {"done", "refused", "FileNotFoundError", "OSError"}, outcomes
    assert [name for name in os.listdir("/") if name.startswith(tag)] == []
    assert [name for name in os.listdir("/etc") if name.startswith(tag)] == []


@pytest.mark.own_agent(sftp_port=free_port())
async def test_the_access_table_and_host_key_outlive_an_agent_restart(
    servers: LiveServers,
    live_agent: LiveAgent,
    signing_key: SigningKey,
    http: aiohttp.ClientSession,
    key: UserKey,
    tmp_path: Path,
) -> None:
    server_id = await servers.create()
    await push_access(live_agent, signing_key, http, table((server_id, [user_row("otto", key)])))
    before = await sftp_target(live_agent, signing_key, http, tmp_path / "before")
    live_agent.kill()  # SIGKILL: nothing is written on the way out
    live_agent.start()
    after = await sftp_target(live_agent, signing_key, http, tmp_path / "after")
    assert after.fingerprint == before.fingerprint

    def listing() -> list[str]:
        with after.sftp(username("otto", server_id), key) as sftp:
            names: list[str] = sftp.listdir("/")
            return names

    assert await asyncio.to_thread(listing) == []


async def test_one_address_cannot_take_every_connection(target: SftpTarget) -> None:
    async def open_from(source: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", target.port, local_addr=(source, 0))

    async def closed(reader: asyncio.StreamReader) -> bool:
        """Whether the agent ends the connection within 3 s (after its banner, if any)."""
        try:
            async with asyncio.timeout(3):
                while await reader.read(1024):
                    pass
        except TimeoutError:
            return False
        return True

    held = [await open_from("127.3.0.1") for _ in range(16)]
    try:
        one_more = await open_from("127.3.0.1")
        assert await closed(one_more[0])
        one_more[1].close()
        elsewhere = await open_from("127.3.0.2")
        assert not await closed(elsewhere[0])  # another address is still served
        elsewhere[1].close()
    finally:
        for _reader, writer in held:
            writer.close()


async def test_guessing_an_accounts_password_locks_its_password_not_its_keys(
    servers: LiveServers,
    live_agent: LiveAgent,
    signing_key: SigningKey,
    http: aiohttp.ClientSession,
    target: SftpTarget,
    key: UserKey,
) -> None:
    server_id = await servers.create()
    password = new_password()
    row = user_row("pia", key).model_copy(
        update={"password_hash": await asyncio.to_thread(hash_password, password)}
    )
    await push_access(live_agent, signing_key, http, table((server_id, [row])))
    name = username("pia", server_id)

    async def log_in(source: str, **credentials: object) -> bool:
        try:
            async with asyncssh.connect(
                "127.0.0.1",
                target.port,
                username=name,
                known_hosts=str(target.known_hosts()),
                local_addr=(source, 0),
                agent_path=None,
                **credentials,
            ):
                return True
        except asyncssh.PermissionDenied:
            return False

    assert await log_in("127.4.0.1", password=password, client_keys=None)
    # Wrong guesses from many addresses (none of them reaches its own address limit) ...
    for number in range(2, 14):
        assert not await log_in(f"127.4.0.{number}", password="guess", client_keys=None)
    # ... lock the account's password, even the right one, from a fresh address ...
    assert not await log_in("127.4.0.99", password=password, client_keys=None)
    # ... but not its owner's key.
    user_key = asyncssh.read_private_key(key.path)
    assert await log_in("127.4.0.98", client_keys=[user_key], password=None)
