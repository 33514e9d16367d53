"""Contract of Pterodactyl's SSH-key routes (``/api/client/account/ssh-keys``) over ours, on
both databases: Pterodactyl's shapes and status codes (200 on add, 204 on remove whether or
not the key was there, 422 on the field for a key refused), our key rules, audit, and
account security from a signed-in session only."""

from __future__ import annotations

import base64
import hashlib

from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import func, select

from control_plane.db.engine import session_factory
from control_plane.db.models import AuditEntry, SshKey
from control_plane.db.session import transaction
from control_plane.keys import ENGINE
from tests.support.compat import pterodactyl_key
from tests.support.panel import Panel

KEYS = "/api/client/account/ssh-keys"


def ed25519_line() -> str:
    public = ed25519.Ed25519PrivateKey.generate().public_key()
    return public.public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode() + " me@laptop"


def fingerprint(line: str) -> str:
    """What ``ssh-keygen -lf`` shows after ``SHA256:`` (Pterodactyl shows just this)."""
    blob = base64.b64decode(line.split()[1])
    return base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


async def count(panel: Panel, model: type, **where: object) -> int:
    async with transaction(session_factory(panel.server.app[ENGINE])) as db:
        query = select(func.count()).select_from(model).filter_by(**where)
        return int(await db.scalar(query) or 0)


def field_error(body: dict[str, list[dict[str, object]]]) -> str:
    error = body["errors"][0]
    assert error["code"] == "ValidationException"
    assert error["status"] == "422"
    meta = error["meta"]
    assert isinstance(meta, dict)
    assert meta["source_field"] == "public_key"
    return str(error["detail"])


async def test_keys_are_added_listed_and_removed_by_fingerprint(panel: Panel) -> None:
    alice = await panel.signed_in("alice@example.org")
    assert await alice.json("GET", KEYS) == {"object": "list", "data": []}
    line = ed25519_line()
    added = await alice.json("POST", KEYS, json={"name": "laptop", "public_key": line})
    assert added["object"] == "ssh_key"
    attributes = added["attributes"]
    assert attributes["name"] == "laptop"
    assert attributes["fingerprint"] == fingerprint(line)
    # Stored as the algorithm and key, without the comment.
    assert attributes["public_key"] == " ".join(line.split()[:2])
    assert attributes["created_at"].endswith("+00:00")
    listed = await alice.json("GET", KEYS)
    assert [k["attributes"] for k in listed["data"]] == [attributes]
    assert await count(panel, AuditEntry, action="ssh_key.added") == 1

    await alice.json("POST", KEYS + "/remove", status=204, json={"fingerprint": fingerprint(line)})
    assert (await alice.json("GET", KEYS))["data"] == []
    assert await count(panel, AuditEntry, action="ssh_key.removed") == 1
    # Removing it again, or a key that never was, is 204 as on Pterodactyl.
    await alice.json("POST", KEYS + "/remove", status=204, json={"fingerprint": fingerprint(line)})
    assert await count(panel, AuditEntry, action="ssh_key.removed") == 1


async def test_openssh_prefixed_fingerprints_are_taken_too(panel: Panel) -> None:
    alice = await panel.signed_in("alice@example.org")
    line = ed25519_line()
    await alice.json("POST", KEYS, json={"name": "laptop", "public_key": line})
    body = {"fingerprint": "SHA256:" + fingerprint(line)}
    await alice.json("POST", KEYS + "/remove", status=204, json=body)
    assert await count(panel, SshKey) == 0


async def test_a_key_refused_is_a_field_error_and_nothing_is_stored(panel: Panel) -> None:
    alice = await panel.signed_in("alice@example.org")
    line = ed25519_line()
    await alice.json("POST", KEYS, json={"name": "laptop", "public_key": line})
    again = await alice.json("POST", KEYS, status=422, json={"name": "twice", "public_key": line})
    assert "yours already" in field_error(again)
    garbage = {"name": "junk", "public_key": "ssh-ed25519 not-base64-at-all!!"}
    assert "OpenSSH public key" in field_error(
        await alice.json("POST", KEYS, status=422, json=garbage)
    )
    small = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    weak = small.public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()
    assert "3072" in field_error(
        await alice.json("POST", KEYS, status=422, json={"name": "old", "public_key": weak})
    )
    missing = await alice.json("POST", KEYS, status=422, json={"name": "no key"})
    assert missing["errors"][0]["meta"]["rule"] == "required"
    assert await count(panel, SshKey) == 1


async def test_an_api_key_may_list_but_not_add_or_remove(panel: Panel) -> None:
    alice = await panel.signed_in("alice@example.org")
    line = ed25519_line()
    await alice.json("POST", KEYS, json={"name": "laptop", "public_key": line})
    bot = await pterodactyl_key(panel, alice, "client")
    assert len((await bot.json("GET", KEYS))["data"]) == 1
    # A leaked key must not add a way in over SFTP, nor remove the owner's.
    added = await bot.json(
        "POST", KEYS, status=403, json={"name": "x", "public_key": ed25519_line()}
    )
    assert "browser session" in added["errors"][0]["detail"]
    body = {"fingerprint": fingerprint(line)}
    await bot.json("POST", KEYS + "/remove", status=403, json=body)
    assert await count(panel, SshKey) == 1


async def test_nobody_removes_or_sees_another_users_key(panel: Panel) -> None:
    alice = await panel.signed_in("alice@example.org")
    mallory = await panel.signed_in("mallory@example.org")
    line = ed25519_line()
    await alice.json("POST", KEYS, json={"name": "laptop", "public_key": line})
    assert (await mallory.json("GET", KEYS))["data"] == []
    await mallory.json(
        "POST", KEYS + "/remove", status=204, json={"fingerprint": fingerprint(line)}
    )
    assert await count(panel, SshKey) == 1
    assert await count(panel, AuditEntry, action="ssh_key.removed") == 0
