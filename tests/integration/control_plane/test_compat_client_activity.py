"""Contract of Pterodactyl's ``GET /api/client/account/activity`` over our own activity
route, on both databases: the caller's own audit entries only, newest first, Pterodactyl's
envelope and paging (25 a page), ``filter[event]`` as a part of the action."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests.support.compat import pterodactyl_key
from tests.support.panel import Browser, Panel

ACTIVITY = "/api/client/account/activity"


def ssh_line() -> str:
    public = ed25519.Ed25519PrivateKey.generate().public_key()
    return public.public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()


async def add_ssh_keys(user: Browser, count: int, prefix: str = "key") -> None:
    for number in range(count):
        body = {"name": f"{prefix} {number}", "public_key": ssh_line()}
        await user.json("POST", "/api/v1/account/ssh-keys", status=201, json=body)


async def test_my_own_entries_newest_first_in_pterodactyls_shape(panel: Panel) -> None:
    alice = await panel.signed_in("alice@example.org")
    mallory = await panel.signed_in("mallory@example.org")
    await add_ssh_keys(alice, 2)
    await add_ssh_keys(mallory, 1, "mallory's")
    bot = await pterodactyl_key(panel, alice, "client", scopes=["read"])
    listed = await bot.json("GET", ACTIVITY)
    assert listed["object"] == "list"
    entries = [entry["attributes"] for entry in listed["data"]]
    assert {entry["object"] for entry in listed["data"]} == {"activity_log"}
    events = [entry["event"] for entry in entries]
    # Newest first: the key made for this call, then the two SSH keys, then the sign-in;
    # nothing mallory did.
    assert events == ["api_key.created", "ssh_key.added", "ssh_key.added", "user.login.succeeded"]
    first = entries[1]
    assert [e["properties"]["name"] for e in entries[1:3]] == ["key 1", "key 0"]
    assert first["ip"] == "127.0.0.1"
    assert first["is_api"] is False
    assert len(first["id"]) == 40
    assert first["timestamp"].endswith("+00:00")
    pagination = listed["meta"]["pagination"]
    assert pagination["per_page"] == 25
    assert pagination["total"] == len(entries)


async def test_filter_and_paging(panel: Panel) -> None:
    alice = await panel.signed_in("alice@example.org")
    await add_ssh_keys(alice, 3)
    filtered = await alice.json("GET", ACTIVITY, params={"filter[event]": "ssh_key", "per_page": 2})
    assert [e["attributes"]["event"] for e in filtered["data"]] == ["ssh_key.added"] * 2
    pagination = filtered["meta"]["pagination"]
    assert (pagination["total"], pagination["total_pages"]) == (3, 2)
    assert "page=2" in pagination["links"]["next"]
    second = await alice.json(
        "GET", ACTIVITY, params={"filter[event]": "ssh_key", "per_page": 2, "page": 2}
    )
    assert len(second["data"]) == 1
    # A LIKE wildcard in the filter is an ordinary character.
    none = await alice.json("GET", ACTIVITY, params={"filter[event]": "ssh%added"})
    assert none["data"] == []
    too_many = await alice.json("GET", ACTIVITY, status=422, params={"per_page": 101})
    assert too_many["errors"][0]["meta"]["source_field"] == "per_page"


async def test_anonymous_is_refused(panel: Panel) -> None:
    anonymous = await panel.browser()
    refused = await anonymous.json("GET", ACTIVITY, status=401)
    assert refused["errors"][0]["code"] == "AuthenticationException"
