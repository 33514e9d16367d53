"""Pterodactyl's signed links, copy, archives, modes, pull and backup lock/download/restore
against a real agent and real Docker: what a bot does with a client key, checked on the
server's volume, and what an attacker tries (a replayed link, a path out of the volume, a
pull aimed at the node's own network)."""

from __future__ import annotations

import asyncio
import io
import tarfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiohttp import web

from tests.integration.control_plane.stack import Stack
from tests.support.agent_process import free_port
from tests.support.compat import pterodactyl_key
from tests.support.panel import Browser

pytestmark = pytest.mark.docker


def link_of(answer: dict[str, Any]) -> str:
    assert answer["object"] == "signed_url"
    url = urlsplit(answer["attributes"]["url"])
    return f"{url.path}?{url.query}"


async def names(bot: Browser, files: str, directory: str) -> dict[str, dict[str, Any]]:
    listed = await bot.json("GET", f"{files}/list?directory={directory}")
    return {e["attributes"]["name"]: e["attributes"] for e in listed["data"]}


async def client_of(stack: Stack, email: str) -> tuple[str, Browser, str]:
    server_id, owner = await stack.owned_server(email)
    bot = await pterodactyl_key(stack.panel, owner, "client")
    identifier = (await bot.json("GET", "/api/client"))["data"][0]["attributes"]["identifier"]
    return server_id, bot, f"/api/client/servers/{identifier}"


@asynccontextmanager
async def receiver() -> AsyncIterator[tuple[int, list[str]]]:
    """A real HTTP server on loopback that records every request it gets."""
    hits: list[str] = []

    async def anything(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response(body=b"secret of the node's network")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", anything)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield port, hits
    finally:
        await runner.cleanup()


async def test_signed_links_copy_archives_modes_and_pull_on_a_real_volume(stack: Stack) -> None:
    server_id, bot, server = await client_of(stack, "links@example.org")
    files = f"{server}/files"
    anonymous = await stack.panel.browser()
    await bot.json("POST", f"{files}/create-folder", status=204, json={"root": "/", "name": "up"})

    upload = link_of(await bot.json("GET", f"{files}/upload"))
    form = aiohttp.FormData()
    form.add_field("files", b"alpha\n", filename="a.txt")
    form.add_field("files", b"beta beta\n", filename="b.txt")
    sent = await anonymous.request("POST", upload + "&directory=/up", data=form)
    assert sent.status == 204, await sent.text()
    listed = await names(bot, files, "/up")
    assert {name: e["size"] for name, e in listed.items()} == {"a.txt": 6, "b.txt": 10}
    again = aiohttp.FormData()
    again.add_field("files", b"replayed\n", filename="c.txt")
    replayed = await anonymous.request("POST", upload + "&directory=/up", data=again)
    assert replayed.status == 403
    assert "c.txt" not in await names(bot, files, "/up")

    download = link_of(await bot.json("GET", f"{files}/download?file=/up/a.txt"))
    got = await anonymous.request("GET", download)
    assert got.status == 200
    assert await got.read() == b"alpha\n"
    assert (await anonymous.request("GET", download)).status == 403

    await bot.json("POST", f"{files}/copy", status=204, json={"location": "/up/a.txt"})
    assert (stack.volume(server_id) / "up" / "a copy.txt").read_bytes() == b"alpha\n"
    # Out of the volume: refused by the node's confinement, nothing written anywhere.
    escape = await bot.request("POST", f"{files}/copy", json={"location": "/../../etc/passwd"})
    assert escape.status in (400, 404, 422)
    assert not list(stack.volume(server_id).parent.glob("**/passwd copy"))

    packed = await bot.json(
        "POST", f"{files}/compress", json={"root": "/up", "files": ["a.txt", "b.txt"]}
    )
    assert packed["object"] == "file_object"
    archive = packed["attributes"]["name"]
    assert archive.endswith(".tar.gz")
    assert packed["attributes"]["is_file"] is True
    assert packed["attributes"]["size"] > 0
    await bot.json("POST", f"{files}/delete", status=204, json={"root": "/up", "files": ["a.txt"]})
    await bot.json("POST", f"{files}/decompress", status=204, json={"root": "/up", "file": archive})
    assert (stack.volume(server_id) / "up" / "a.txt").read_bytes() == b"alpha\n"

    await bot.json(
        "POST",
        f"{files}/chmod",
        status=204,
        json={"root": "/up", "files": [{"file": "b.txt", "mode": "600"}]},
    )
    assert (await names(bot, files, "/up"))["b.txt"]["mode"] == "-rw-------"

    # Pull: the node fetches, through its SSRF guard; its own network is out of reach.
    async with receiver() as (port, hits):
        for url in (
            f"http://127.0.0.1:{port}/mod.jar",
            f"http://localhost:{port}/mod.jar",
            "http://169.254.169.254/latest/meta-data/",
            "http://10.0.0.1/mod.jar",
            "http://[::1]/mod.jar",
            "file:///etc/passwd",
        ):
            refused = await bot.request(
                "POST", f"{files}/pull", json={"url": url, "directory": "/up"}
            )
            body = await refused.json()
            assert refused.status == 422, (url, body)
            assert body["errors"][0]["status"] == str(refused.status)
        assert hits == []
    assert set(await names(bot, files, "/up")) == {"a.txt", "a copy.txt", "b.txt", archive}

    trail = await stack.admin.json("GET", f"/api/v1/audit?target_id={server_id}")
    actions = {entry["action"] for entry in trail["data"]}
    assert {
        "server.files.upload",
        "server.files.download",
        "server.files.copy",
        "server.files.compress",
        "server.files.decompress",
        "server.files.chmod",
    } <= actions


def _read(path: Path) -> bytes | None:
    # Mid-swap the file may be absent for a moment.
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


async def wait_backup(bot: Browser, backups: str, backup: str) -> None:
    deadline = time.monotonic() + 60
    while not (await bot.json("GET", f"{backups}/{backup}"))["attributes"]["completed_at"]:
        assert time.monotonic() < deadline, "the backup never finished"
        await asyncio.sleep(0.3)


async def test_backup_lock_download_link_and_restore(stack: Stack) -> None:
    server_id, bot, server = await client_of(stack, "restore@example.org")
    files, backups = f"{server}/files", f"{server}/backups"
    anonymous = await stack.panel.browser()
    written = await bot.request("POST", f"{files}/write?file=/keep.txt", data=b"version 1\n")
    assert written.status == 204
    made = await bot.json("POST", backups, json={"name": "before"})
    backup = made["attributes"]["uuid"]
    await wait_backup(bot, backups, backup)

    locked = await bot.json("POST", f"{backups}/{backup}/lock")
    assert locked["attributes"]["is_locked"] is True
    refused = await bot.json("DELETE", f"{backups}/{backup}", status=400)
    assert refused["errors"][0]["code"] == "DisplayException"

    link = link_of(await bot.json("GET", f"{backups}/{backup}/download"))
    got = await anonymous.request("GET", link)
    assert got.status == 200
    assert got.headers["Content-Type"] == "application/gzip"
    with tarfile.open(fileobj=io.BytesIO(await got.read()), mode="r:gz") as tar:
        member = tar.extractfile("keep.txt") or tar.extractfile("./keep.txt")
        assert member is not None
        assert member.read() == b"version 1\n"
    assert (await anonymous.request("GET", link)).status == 403

    await bot.request("POST", f"{files}/write?file=/keep.txt", data=b"version 2\n")
    await bot.request("POST", f"{files}/write?file=/extra.txt", data=b"new\n")
    await bot.json("POST", f"{backups}/{backup}/restore", status=204, json={"truncate": True})
    volume = stack.volume(server_id)
    deadline = time.monotonic() + 60
    while (volume / "extra.txt").exists() or _read(volume / "keep.txt") != b"version 1\n":
        assert time.monotonic() < deadline, "the restore never finished"
        await asyncio.sleep(0.3)

    # Our power-state rule: no restore while the game runs (Pterodactyl's 400).
    await bot.json("POST", f"{server}/power", status=204, json={"signal": "start"})
    deadline = time.monotonic() + 30
    while (await bot.json("GET", f"{server}/resources"))["attributes"]["current_state"] != (
        "running"
    ):
        assert time.monotonic() < deadline, "the server never ran"
        await asyncio.sleep(0.3)
    running = await bot.json(
        "POST", f"{backups}/{backup}/restore", status=400, json={"truncate": True}
    )
    assert running["errors"][0]["code"] == "BadRequestHttpException"
    await bot.json("POST", f"{server}/power", status=204, json={"signal": "kill"})
    unlocked = await bot.json("POST", f"{backups}/{backup}/lock")
    assert unlocked["attributes"]["is_locked"] is False
