"""SFTP through the whole system: keys added on the control plane reach the agent, and every
change that takes access away (key removed, permission revoked, server suspended, user
disabled) ends an open session within 5 s. Real control plane, real agent, paramiko."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from pathlib import Path
from typing import Any

import asyncssh
import paramiko
import pytest

from shared.sftp_api import login_name
from tests.integration.control_plane.stack import Stack
from tests.integration.node_agent.sftp_client import SftpTarget, UserKey
from tests.support.panel import Browser

pytestmark = [pytest.mark.docker, pytest.mark.timeout(240)]
KEYS = "/api/v1/account/ssh-keys"


async def target_of(stack: Stack, tmp_path: Path) -> SftpTarget:
    """The node's SFTP port and host key, as an administrator reads them from the panel."""
    info = await stack.admin.json("GET", f"/api/v1/nodes/{stack.node_id}/system")
    sftp = info["sftp"]
    directory = tmp_path / "ssh"
    directory.mkdir(exist_ok=True)
    return SftpTarget(sftp["port"], sftp["host_key"], sftp["fingerprint"], directory)


async def add_key(browser: Browser, key: UserKey, name: str = "laptop") -> dict[str, str]:
    body: dict[str, str] = await browser.json(
        "POST", KEYS, status=201, json={"name": name, "public_key": key.public + " me@host"}
    )
    return body


async def login(browser: Browser, server_id: str) -> str:
    listing = await browser.json("GET", KEYS)
    return login_name(listing["sftp_account"], uuid.UUID(server_id))


async def ends_within(client: paramiko.SSHClient, seconds: float) -> float:
    transport = client.get_transport()
    assert transport is not None
    started = time.monotonic()
    while transport.is_active() and time.monotonic() - started < seconds:
        await asyncio.sleep(0.05)
    assert not transport.is_active(), f"the session is still open {seconds} s later"
    return time.monotonic() - started


async def test_keys_api_checks_keys_and_shows_fingerprints(stack: Stack, tmp_path: Path) -> None:
    _, owner = await stack.owned_server("keys@example.org")
    key = UserKey.make(tmp_path / "k")
    added = await add_key(owner, key)
    assert added["fingerprint"].startswith("SHA256:")
    assert added["public_key"] == key.public  # the comment dropped
    await owner.json("POST", KEYS, status=409, json={"name": "again", "public_key": key.public})
    small_rsa = asyncssh.generate_private_key("ssh-rsa", key_size=2048)
    big_rsa = asyncssh.generate_private_key("ssh-rsa", key_size=3072)
    ecdsa = asyncssh.generate_private_key("ecdsa-sha2-nistp256")
    for good in (big_rsa, ecdsa):
        line = good.export_public_key().decode()
        await owner.json("POST", KEYS, status=201, json={"name": "ok", "public_key": line})
    for bad in ["not a key", "ssh-ed25519 AAAA!!!!", small_rsa.export_public_key().decode()]:
        answer = await owner.request("POST", KEYS, json={"name": "bad", "public_key": bad})
        assert answer.status == 400, await answer.text()
    listing = await owner.json("GET", KEYS)
    assert listing["data"][0]["fingerprint"] == added["fingerprint"]
    assert len(listing["data"]) == 3
    assert listing["sftp_account"] == "keys"


async def test_an_owner_uploads_with_a_key_added_on_the_panel(stack: Stack, tmp_path: Path) -> None:
    server_id, owner = await stack.owned_server("olivia@example.org")
    target = await target_of(stack, tmp_path)
    key = UserKey.make(tmp_path / "k")
    await add_key(owner, key)
    name = await login(owner, server_id)
    # What the owner is shown: where to connect, as whom, and the host key to expect.
    details = await owner.json("GET", f"/api/v1/servers/{server_id}/sftp")
    assert details == {
        "host": "127.0.0.1",
        "port": target.port,
        "username": name,
        "host_key": target.host_key,
        "fingerprint": target.fingerprint,
    }
    (tmp_path / "world.zip").write_bytes(b"PK\x03\x04 a world")

    def upload() -> None:
        with target.sftp(name, key) as sftp:
            sftp.put(str(tmp_path / "world.zip"), "/world.zip")

    await asyncio.to_thread(upload)
    assert (stack.volume(server_id) / "world.zip").read_bytes() == b"PK\x03\x04 a world"
    stranger = UserKey.make(tmp_path / "stranger")

    def attempts() -> None:
        with pytest.raises(paramiko.AuthenticationException):
            target.ssh_client(name, stranger)
        target.ssh_client(name, key).close()

    # Both reach the audit trail through the node's event stream (events a node sends before
    # the control plane follows it are lost, so try again until it does).
    wanted = {"server.sftp.login", "server.sftp.login_failed"}
    deadline = time.monotonic() + 30
    seen: dict[str, dict[str, object]] = {}
    while time.monotonic() < deadline and set(seen) != wanted:
        # A few tries at most: each failure counts against this address's limit.
        await asyncio.to_thread(attempts)
        waited = time.monotonic() + 6
        while time.monotonic() < waited and set(seen) != wanted:
            await asyncio.sleep(0.3)
            page = await stack.admin.json(
                "GET", f"/api/v1/audit?action=server.sftp.&target_id={server_id}"
            )
            seen = {entry["action"]: entry for entry in page["data"]}
    assert set(seen) == wanted, seen
    assert seen["server.sftp.login"]["details"] == {
        "user": seen["server.sftp.login"]["details"]["user"],  # type: ignore[index]
        "success": True,
        "method": "publickey",
        "address": "127.0.0.1",
    }


@pytest.mark.parametrize(
    "change",
    [
        "key removed",
        "key removed by an administrator",
        "permission revoked",
        "server suspended",
        "user disabled",
    ],
)
async def test_losing_access_on_the_panel_ends_the_open_session_within_5_s(
    stack: Stack, tmp_path: Path, change: str
) -> None:
    server_id, owner = await stack.owned_server(f"owner-{uuid.uuid4().hex[:8]}@example.org")
    target = await target_of(stack, tmp_path)
    helper_email = f"helper-{uuid.uuid4().hex[:8]}@example.org"
    helper_id = await stack.panel.create_user(helper_email)
    helper = await stack.panel.browser()
    await helper.login(helper_email)
    sub = await owner.json(
        "POST",
        f"/api/v1/servers/{server_id}/users",
        status=201,
        json={"email": helper_email, "permissions": ["files.sftp", "files.read"]},
    )
    key = UserKey.make(tmp_path / "helper")
    added = await add_key(helper, key)
    name = await login(helper, server_id)
    client = await asyncio.to_thread(target.ssh_client, name, key)
    try:
        sftp = await asyncio.to_thread(client.open_sftp)
        assert await asyncio.to_thread(sftp.listdir, "/") is not None
        with pytest.raises(PermissionError):  # files.read only: no writes
            await asyncio.to_thread(lambda: sftp.open("/x", "w").write(b"x"))
        if change == "key removed":
            await helper.json("DELETE", f"{KEYS}/{added['id']}", status=204)
        elif change == "key removed by an administrator":
            keys = f"/api/v1/users/{helper_id}/ssh-keys"
            listed = await stack.admin.json("GET", keys)
            assert [k["fingerprint"] for k in listed["data"]] == [added["fingerprint"]]
            await stack.admin.json("DELETE", f"{keys}/{added['id']}", status=204)
        elif change == "permission revoked":
            await owner.json(
                "PATCH",
                f"/api/v1/servers/{server_id}/users/{sub['id']}",
                json={"permissions": ["files.read"]},
            )
        elif change == "server suspended":
            await stack.admin.json("POST", f"/api/v1/servers/{server_id}/suspend")
        else:
            await stack.admin.json("PATCH", f"/api/v1/users/{helper_id}", json={"disabled": True})
        await ends_within(client, 5)
    finally:
        client.close()
    with pytest.raises(paramiko.AuthenticationException):
        await asyncio.to_thread(lambda: target.ssh_client(name, key))


async def test_a_per_server_sftp_password_is_shown_once_and_replacing_it_ends_sessions(
    stack: Stack, tmp_path: Path
) -> None:
    server_id, owner = await stack.owned_server("pat@example.org")
    target = await target_of(stack, tmp_path)
    path = f"/api/v1/servers/{server_id}/sftp-password"
    issued = await owner.json("POST", path, status=201)
    assert issued["username"] == login_name("pat", uuid.UUID(server_id))
    assert len(issued["password"]) >= 24

    client = await asyncio.to_thread(target.password_client, issued["username"], issued["password"])
    try:
        sftp = await asyncio.to_thread(client.open_sftp)
        with sftp.open("/eula.txt", "w") as handle:
            await asyncio.to_thread(handle.write, b"eula=true\n")
        assert (stack.volume(server_id) / "eula.txt").read_bytes() == b"eula=true\n"
        with pytest.raises(paramiko.AuthenticationException):
            await asyncio.to_thread(target.password_client, issued["username"], "wrong password")
        again = await owner.json("POST", path, status=201)  # the old one stops working
        assert again["password"] != issued["password"]
        await ends_within(client, 5)
    finally:
        client.close()
    with pytest.raises(paramiko.AuthenticationException):
        await asyncio.to_thread(target.password_client, issued["username"], issued["password"])
    second = await asyncio.to_thread(target.password_client, again["username"], again["password"])
    try:
        await owner.json("DELETE", path, status=204)
        await ends_within(second, 5)
    finally:
        second.close()
    await owner.json("DELETE", path, status=204)  # none left: still done


async def test_an_administrator_removes_a_users_sftp_passwords_and_their_sessions_end(
    stack: Stack, tmp_path: Path
) -> None:
    email = f"sam-{uuid.uuid4().hex[:8]}@example.org"
    server_id, owner = await stack.owned_server(email)
    owner_id = (await owner.json("GET", "/api/v1/auth/session"))["user"]["id"]
    target = await target_of(stack, tmp_path)
    issued = await owner.json("POST", f"/api/v1/servers/{server_id}/sftp-password", status=201)
    passwords = f"/api/v1/users/{owner_id}/sftp-passwords"
    listed = await stack.admin.json("GET", passwords)
    assert [p["server_id"] for p in listed["data"]] == [server_id]
    assert "password" not in listed["data"][0]
    client = await asyncio.to_thread(target.password_client, issued["username"], issued["password"])
    try:
        await stack.admin.json("DELETE", passwords, status=204)
        await ends_within(client, 5)
    finally:
        client.close()
    with pytest.raises(paramiko.AuthenticationException):
        await asyncio.to_thread(target.password_client, issued["username"], issued["password"])
    await stack.admin.json("DELETE", passwords, status=204)  # none left: still done
    assert (await stack.admin.json("GET", passwords))["data"] == []
    trail = await stack.admin.json("GET", f"/api/v1/audit?target_type=user&target_id={owner_id}")
    removed = [e for e in trail["data"] if e["action"] == "user.sftp_passwords.removed"]
    assert [e["details"] for e in removed] == [{"email": email, "removed": 1}]


async def test_a_new_servers_owner_can_log_in_at_once(stack: Stack, tmp_path: Path) -> None:
    owner_id = await stack.panel.create_user("nina@example.org")
    owner = await stack.panel.browser()
    await owner.login("nina@example.org")
    key = UserKey.make(tmp_path / "k")
    await add_key(owner, key)  # before the server exists
    await stack.add_ports(1)
    created = await stack.admin.json(
        "POST", "/api/v1/servers", status=201, json=stack.server_body(owner_id)
    )
    stack.servers.append(created["id"])
    target = await target_of(stack, tmp_path)
    name = await login(owner, created["id"])

    def listing() -> list[str]:
        with target.sftp(name, key) as sftp:
            return sorted(sftp.listdir("/"))

    assert await asyncio.to_thread(listing) == []
    # Deleting the server takes it out of the node's table.
    await stack.admin.json("DELETE", f"/api/v1/servers/{created['id']}", status=204)
    stack.servers.remove(created["id"])
    with pytest.raises(paramiko.AuthenticationException):
        await asyncio.to_thread(target.ssh_client, name, key)


async def test_a_node_that_missed_a_change_gets_the_table_when_it_answers_again(
    stack: Stack, tmp_path: Path
) -> None:
    server_id, owner = await stack.owned_server("quinn@example.org")
    target = await target_of(stack, tmp_path)
    stack.agent.stop()
    key = UserKey.make(tmp_path / "k")
    await add_key(owner, key)  # the push fails: the node is down
    stack.agent.start()
    name = await login(owner, server_id)
    # Wait for the table on the node's disk (logging in again and again would trip the
    # agent's failure limit for this address), then log in once.
    stored = stack.agent.data_dir / "sftp-access.json"
    deadline = time.monotonic() + 60
    while not (stored.exists() and key.public in stored.read_text()):
        assert time.monotonic() < deadline, "the node never got the table"
        await asyncio.sleep(0.2)
    await asyncio.to_thread(lambda: target.ssh_client(name, key).close())


async def test_a_flood_of_unknown_names_is_audited_in_a_bounded_number_of_rows(
    stack: Stack, tmp_path: Path
) -> None:
    target = await target_of(stack, tmp_path)
    junk = asyncssh.generate_private_key("ssh-ed25519")
    query = f"/api/v1/audit?action=node.sftp.&target_id={stack.node_id}&per_page=100"

    async def attempt(source: str) -> None:
        with contextlib.suppress(asyncssh.Error, OSError):
            async with asyncssh.connect(
                "127.0.0.1",
                target.port,
                username=uuid.uuid4().hex,
                client_keys=[junk],
                known_hosts=None,
                local_addr=(source, 0),
                preferred_auth="publickey",
                agent_path=None,
            ):
                pass

    async def rows(prefix: str) -> list[dict[str, Any]]:
        page = await stack.admin.json("GET", query)
        return [r for r in page["data"] if str(r["details"]["source"]).startswith(prefix)]

    # Events sent before the control plane follows the node are lost: first one attempt,
    # until its window's row is there.
    deadline = time.monotonic() + 30
    while not await rows("127.4.1."):
        assert time.monotonic() < deadline, "no sftp failure report reached the audit trail"
        await attempt("127.4.1.1")
        await asyncio.sleep(1.5)  # one report window (1 s) and its way to the audit trail
    sources = [f"127.4.0.{n}" for n in range(1, 5)]
    started = time.monotonic()
    await asyncio.gather(*(attempt(sources[n % 4]) for n in range(200)))
    flooded = time.monotonic() - started
    counted, found = 0, []
    deadline = time.monotonic() + 20
    while counted < 200 and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        found = await rows("127.4.0.")
        counted = sum(int(r["details"]["count"]) for r in found)
    assert counted == 200, found
    # One row per source and window: 200 attempts, a handful of rows.
    assert len(found) <= 4 * (flooded + 3), len(found)
    entry = found[0]
    assert entry["action"] == "node.sftp.login_failures"
    assert entry["target_type"] == "node"
    assert set(entry["details"]) == {"source", "count", "reasons", "seconds"}
    reasons = {reason["reason"] for r in found for reason in r["details"]["reasons"]}
    assert "unknown_account" in reasons
    assert reasons <= {"unknown_account", "rate_limited", "too_many_connections"}
