"""Contract of Pterodactyl's remaining Client API file and backup routes on the authorisation
world (both databases; the node is unreachable, so actions let through answer 503 and
test_compat_files_end_to_end.py runs them on a real agent): status codes, envelopes, the
fields clients read, and an attacker's use of signed links."""

from __future__ import annotations

import base64
import time
import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import orjson
from sqlalchemy import delete, select, update

from control_plane.db.engine import session_factory
from control_plane.db.models import ApiKey, AuditEntry, Server, Subuser
from control_plane.db.session import transaction
from control_plane.keys import ENGINE
from control_plane.security import signed_links
from control_plane.security.api_keys import Scope
from control_plane.security.caller import Caller
from tests.integration.control_plane.conftest import AUTH_SECRET
from tests.support.compat import pterodactyl_key
from tests.support.panel import Browser
from tests.support.world import World


def _server(world: World) -> str:
    return f"/api/client/servers/{world.compat_ids['client']['alice_server']}"


async def _bobs_server(world: World) -> str:
    async with transaction(session_factory(world.panel.server.app[ENGINE])) as db:
        server = await db.get(Server, uuid.UUID(world.ids["bob_server"]))
        assert server is not None
        return f"/api/client/servers/{server.identifier}"


async def _grant_carol(world: World, permissions: list[str]) -> None:
    async with transaction(session_factory(world.panel.server.app[ENGINE])) as db:
        await db.execute(
            update(Subuser)
            .where(Subuser.id == uuid.UUID(world.ids["carol_subuser"]))
            .values(permissions=permissions)
        )


def _link_path(answer: dict[str, Any]) -> str:
    """The path and query of a ``signed_url`` answer (the test client adds the host)."""
    assert answer["object"] == "signed_url"
    assert set(answer["attributes"]) == {"url"}
    url = urlsplit(answer["attributes"]["url"])
    assert url.scheme in ("http", "https")
    assert url.netloc
    return f"{url.path}?{url.query}"


async def _anonymous(world: World) -> Browser:
    return await world.panel.browser()


async def test_copy_compress_decompress_pull_and_chmod_contracts(world: World) -> None:
    files = _server(world) + "/files"
    alice = await pterodactyl_key(world.panel, world.alice, "client")
    # Valid requests reach the node (unreachable here: 503 in Pterodactyl's shape).
    valid = {
        "copy": {"location": "/server.properties"},
        "compress": {"root": "/", "files": ["world", "server.properties"]},
        "decompress": {"root": "/", "file": "world.zip"},
        "pull": {"url": "https://example.org/mod.jar", "directory": "/mods", "use_header": True},
        "chmod": {"root": "/", "files": [{"file": "start.sh", "mode": "755"}]},
    }
    for route, body in valid.items():
        down = await alice.json("POST", f"{files}/{route}", status=503, json=body)
        assert down["errors"][0]["status"] == "503"
    # Invalid ones are Pterodactyl's 422 with the field and the rule.
    problems = {
        "copy": ({}, "location", "required"),
        "compress": ({"root": "/", "files": []}, "files", "min"),
        "decompress": ({"root": "/"}, "file", "required"),
        "pull": ({"directory": "/"}, "url", "required"),
        "chmod": ({"root": "/", "files": [{"file": "a", "mode": "999"}]}, "mode", "invalid"),
    }
    for route, (body, field, rule) in problems.items():
        refused = await alice.json("POST", f"{files}/{route}", status=422, json=body)
        error = refused["errors"][0]
        assert error["code"] == "ValidationException", route
        if rule != "invalid":
            assert error["meta"] == {"source_field": field, "rule": rule}, route
        else:
            assert field in error["detail"], route


async def test_sub_users_need_our_permission_and_others_see_nothing(world: World) -> None:
    files = _server(world) + "/files"
    await _grant_carol(world, ["files.read"])
    carol = await pterodactyl_key(world.panel, world.carol, "client")
    bob = await pterodactyl_key(world.panel, world.bob, "client")
    needs = {
        "copy": ({"location": "/a"}, "files.create"),
        "compress": ({"root": "/", "files": ["a"]}, "files.archive"),
        "decompress": ({"root": "/", "file": "a.zip"}, "files.archive"),
        "pull": ({"url": "https://example.org/a"}, "files.create"),
        "chmod": ({"root": "/", "files": [{"file": "a", "mode": 644}]}, "files.write"),
    }
    for route, (body, permission) in needs.items():
        refused = await carol.json("POST", f"{files}/{route}", status=403, json=body)
        assert permission in refused["errors"][0]["detail"]
        hidden = await bob.json("POST", f"{files}/{route}", status=404, json=body)
        assert hidden["errors"][0]["code"] == "NotFoundHttpException"
    await carol.json("GET", f"{files}/upload", status=403)
    await bob.json("GET", f"{files}/upload", status=404)
    await bob.json("GET", f"{files}/download?file=/a", status=404)
    # files.read is enough for a download link.
    _link_path(await carol.json("GET", f"{files}/download?file=/a"))


async def test_backup_lock_toggles_and_a_locked_backup_is_not_deleted(world: World) -> None:
    backups = _server(world) + "/backups"
    backup = world.ids["alice_backup"]
    alice = await pterodactyl_key(world.panel, world.alice, "client")
    locked = await alice.json("POST", f"{backups}/{backup}/lock")
    assert locked["object"] == "backup"
    assert locked["attributes"]["uuid"] == backup
    assert locked["attributes"]["is_locked"] is True
    # Pterodactyl's BackupLockedException: a 400 DisplayException.
    kept = await alice.json("DELETE", f"{backups}/{backup}", status=400)
    assert kept["errors"][0]["code"] == "DisplayException"
    assert "locked" in kept["errors"][0]["detail"]
    unlocked = await alice.json("POST", f"{backups}/{backup}/lock")
    assert unlocked["attributes"]["is_locked"] is False
    async with transaction(session_factory(world.panel.server.app[ENGINE])) as db:
        actions = list(
            await db.scalars(
                select(AuditEntry.action).where(AuditEntry.action.like("server.backup.%locked"))
            )
        )
    assert actions == ["server.backup.locked", "server.backup.unlocked"]
    # Locking needs backups.delete, as in Pterodactyl; someone else's backup is 404.
    await _grant_carol(world, ["backups.read", "backups.restore"])
    carol = await pterodactyl_key(world.panel, world.carol, "client")
    await carol.json("POST", f"{backups}/{backup}/lock", status=403)
    bob = await pterodactyl_key(world.panel, world.bob, "client")
    await bob.json("POST", f"{backups}/{backup}/lock", status=404)
    await bob.json("POST", f"{await _bobs_server(world)}/backups/{backup}/lock", status=404)


async def test_restore_needs_truncate_and_its_permission(world: World) -> None:
    backups = _server(world) + "/backups"
    backup = world.ids["alice_backup"]
    alice = await pterodactyl_key(world.panel, world.alice, "client")
    missing = await alice.json("POST", f"{backups}/{backup}/restore", status=422, json={})
    assert missing["errors"][0]["meta"] == {"source_field": "truncate", "rule": "required"}
    # Our restore replaces every file: asking to keep the others is refused, not ignored.
    keep = await alice.json(
        "POST", f"{backups}/{backup}/restore", status=422, json={"truncate": False}
    )
    assert keep["errors"][0]["meta"] == {"source_field": "truncate", "rule": "accepted"}
    await alice.json("POST", f"{backups}/{backup}/restore", status=503, json={"truncate": True})
    await _grant_carol(world, ["backups.read", "backups.delete"])
    carol = await pterodactyl_key(world.panel, world.carol, "client")
    await carol.json("POST", f"{backups}/{backup}/restore", status=403, json={"truncate": True})
    bob = await pterodactyl_key(world.panel, world.bob, "client")
    await bob.json("POST", f"{backups}/{backup}/restore", status=404, json={"truncate": True})
    await alice.json(
        "POST", f"{backups}/{uuid.uuid4()}/restore", status=404, json={"truncate": True}
    )


async def test_a_backup_download_link_and_who_gets_one(world: World) -> None:
    backups = _server(world) + "/backups"
    backup = world.ids["alice_backup"]
    alice = await pterodactyl_key(world.panel, world.alice, "client")
    link = _link_path(await alice.json("GET", f"{backups}/{backup}/download"))
    assert link.startswith("/api/client/signed/backups/download?token=")
    # Opened without any credential, it reaches our download (the node: 503 here).
    anonymous = await _anonymous(world)
    response = await anonymous.request("GET", link)
    assert response.status == 503
    await _grant_carol(world, ["backups.read"])
    carol = await pterodactyl_key(world.panel, world.carol, "client")
    await carol.json("GET", f"{backups}/{backup}/download", status=403)
    bob = await pterodactyl_key(world.panel, world.bob, "client")
    await bob.json("GET", f"{backups}/{backup}/download", status=404)
    await bob.json("GET", f"{await _bobs_server(world)}/backups/{backup}/download", status=404)


def _tampered(token: str, **claims: Any) -> str:
    header, payload, signature = token.split(".")
    data = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    data.update(claims)
    forged = base64.urlsafe_b64encode(orjson.dumps(data)).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


async def _refused(world: World, method: str, path: str, **kwargs: Any) -> None:
    anonymous = await _anonymous(world)
    response = await anonymous.request(method, path, **kwargs)
    body = await response.json()
    assert response.status == 403, (path, body)
    assert body["errors"][0] == {
        "code": "AccessDeniedHttpException",
        "status": "403",
        "detail": "this link is invalid, used or expired; ask for a new one",
    }


async def test_an_attacker_cannot_replay_tamper_with_or_outlive_a_link(world: World) -> None:
    files = _server(world) + "/files"
    alice = await pterodactyl_key(world.panel, world.alice, "client")
    link = _link_path(await alice.json("GET", f"{files}/download?file=/secret.txt"))
    token = parse_qs(urlsplit(link).query)["token"][0]
    signed = "/api/client/signed"
    # Another path or another server in the token: the signature no longer holds.
    other = world.ids["bob_server"]
    for forged in (_tampered(token, tgt="/other.txt"), _tampered(token, srv=other)):
        await _refused(world, "GET", f"{signed}/files/download?token={forged}")
    # A download link is no backup link, nor an upload link.
    await _refused(world, "GET", f"{signed}/backups/download?token={token}")
    await _refused(world, "POST", f"{signed}/files/upload?token={token}", data=b"")
    await _refused(world, "GET", f"{signed}/files/download?token=not-a-token-at-all")
    # Used once (the node is unreachable, but the link is spent), then refused.
    anonymous = await _anonymous(world)
    assert (await anonymous.request("GET", link)).status == 503
    await _refused(world, "GET", link)
    # Expired: made ten minutes ago with our key.
    caller = Caller(
        user_id=uuid.UUID(world.ids["alice_user"]),
        email="alice@example.org",
        is_admin=False,
        via="session",
        scopes=frozenset({Scope.READ}),
        ip="127.0.0.1",
        user_agent="",
        session_id=uuid.UUID(world.ids["alice_session"]),
    )
    old, _ = signed_links.issue(
        AUTH_SECRET,
        caller,
        uuid.UUID(world.ids["alice_server"]),
        "file.download",
        "/secret.txt",
        now=time.time() - 600,
    )
    await _refused(world, "GET", f"{signed}/files/download?token={old}")
    async with transaction(session_factory(world.panel.server.app[ENGINE])) as db:
        refusals = await db.scalar(
            select(AuditEntry.id).where(AuditEntry.action == "auth.link_refused").limit(1)
        )
    assert refusals is not None


async def test_a_link_is_decided_again_when_it_is_used(world: World) -> None:
    files = _server(world) + "/files"
    await _grant_carol(world, ["files.read", "files.create"])
    carol = await pterodactyl_key(world.panel, world.carol, "client")
    first = _link_path(await carol.json("GET", f"{files}/download?file=/a"))
    second = _link_path(await carol.json("GET", f"{files}/download?file=/a"))
    upload = _link_path(await carol.json("GET", f"{files}/upload"))
    # The permission taken away after the link was made: 403 when it is used.
    await _grant_carol(world, ["console.read"])
    anonymous = await _anonymous(world)
    denied = await anonymous.request("GET", first)
    assert denied.status == 403
    assert "files.read" in (await denied.json())["errors"][0]["detail"]
    # No longer a sub-user at all: the server is not found.
    async with transaction(session_factory(world.panel.server.app[ENGINE])) as db:
        await db.execute(
            update(Subuser)
            .where(Subuser.id == uuid.UUID(world.ids["carol_subuser"]))
            .values(permissions=["files.read"])
        )
    assert (await anonymous.request("POST", upload, data=b"")).status == 403
    async with transaction(session_factory(world.panel.server.app[ENGINE])) as db:
        sub = await db.get(Subuser, uuid.UUID(world.ids["carol_subuser"]))
        assert sub is not None
        await db.delete(sub)
    assert (await anonymous.request("GET", second)).status == 404
    # A revoked key's links die with it.
    alice = await pterodactyl_key(world.panel, world.alice, "client")
    link = _link_path(await alice.json("GET", f"{files}/download?file=/a"))
    async with transaction(session_factory(world.panel.server.app[ENGINE])) as db:
        await db.execute(delete(ApiKey).where(ApiKey.kind == "client"))
    await _refused(world, "GET", link)


async def test_a_read_only_key_gets_no_working_upload_link(world: World) -> None:
    files = _server(world) + "/files"
    reader = await pterodactyl_key(world.panel, world.alice, "client", ["read"])
    upload = _link_path(await reader.json("GET", f"{files}/upload"))
    anonymous = await _anonymous(world)
    form = aiohttp.FormData()
    form.add_field("files", b"x", filename="x.txt")
    refused = await anonymous.request("POST", upload + "&directory=/", data=form)
    assert refused.status == 403
    assert "write" in (await refused.json())["errors"][0]["detail"]
