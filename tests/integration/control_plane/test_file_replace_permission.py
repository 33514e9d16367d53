"""Creating a file is ``files.create``; putting one in the place of an existing file is
changing it, ``files.write``, as saving it in the editor is. A sub-user allowed only to create
files replaced ``server.properties`` or a plugin by uploading (ours and Pterodactyl's signed
upload) or pulling a file of the same name, or by extracting an archive holding one
(``files.archive``). Against a real agent and volume."""

from __future__ import annotations

import io
import tarfile

import aiohttp
import pytest

from tests.integration.control_plane.stack import Stack
from tests.integration.control_plane.test_compat_files_end_to_end import link_of
from tests.support.compat import pterodactyl_key
from tests.support.panel import Browser

pytestmark = pytest.mark.docker

HELPER = "builder@example.org"
ORIGINAL = b"motd=the owner's\n"


def tar_gz(entries: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as archive:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return out.getvalue()


async def owned_with_helper(
    stack: Stack, permissions: list[str]
) -> tuple[str, Browser, Browser, str]:
    """A server whose owner has saved ``/server.properties`` (ORIGINAL), and HELPER signed in
    as its sub-user with ``permissions``: the server, both browsers and the sub-user's id."""
    server_id, owner = await stack.owned_server("owner@example.org")
    files = f"/api/v1/servers/{server_id}/files"
    await owner.json("PUT", f"{files}/contents?path=/server.properties", data=ORIGINAL)
    await stack.panel.create_user(HELPER)
    helper = await stack.panel.browser()
    await helper.login(HELPER)
    added = await owner.json(
        "POST",
        f"/api/v1/servers/{server_id}/users",
        status=201,
        json={"email": HELPER, "permissions": permissions},
    )
    return server_id, owner, helper, str(added["id"])


async def test_only_who_may_change_files_can_replace_one_by_upload_or_pull(
    stack: Stack,
) -> None:
    server_id, owner, helper, _ = await owned_with_helper(
        stack, ["files.read", "files.create", "files.archive"]
    )
    files = f"/api/v1/servers/{server_id}/files"
    volume = stack.volume(server_id)

    # Uploading over the existing file: refused, the file as it was, no temporary left.
    refused = await helper.json(
        "PUT", f"{files}/upload?path=/server.properties&size=6", status=409, data=b"pwned\n"
    )
    assert "'files.write' permission" in refused["error"]["message"]
    # A new file is what files.create is for.
    await helper.json("PUT", f"{files}/upload?path=/plugin.jar&size=4", data=b"new\n")
    # Pulling with overwrite: refused before the node is asked.
    pulled = await helper.json(
        "POST",
        f"{files}/pull",
        status=403,
        json={"url": "https://example.org/server.properties", "overwrite": True},
    )
    assert "'files.write' permission" in pulled["error"]["message"]
    # Pterodactyl's signed upload, with the sub-user's own client key.
    bot = await pterodactyl_key(stack.panel, helper, "client")
    identifier = (await bot.json("GET", "/api/client"))["data"][0]["attributes"]["identifier"]
    link = link_of(await bot.json("GET", f"/api/client/servers/{identifier}/files/upload"))
    form = aiohttp.FormData()
    form.add_field("files", b"pwned\n", filename="server.properties")
    signed = await (await stack.panel.browser()).request("POST", link + "&directory=/", data=form)
    assert signed.status == 409, await signed.text()

    # Extracting an archive that holds it: refused whole, nothing written.
    for name, entries in {
        "over.tar.gz": {"fresh.txt": b"fresh\n", "server.properties": b"pwned\n"},
        "new.tar.gz": {"fresh.txt": b"fresh\n"},
    }.items():
        archive = tar_gz(entries)
        await helper.json("PUT", f"{files}/upload?path=/{name}&size={len(archive)}", data=archive)
    extracted = await helper.json(
        "POST", f"{files}/decompress", status=409, json={"path": "/over.tar.gz"}
    )
    assert "'files.write' permission" in extracted["error"]["message"]
    assert not (volume / "fresh.txt").exists()
    await helper.json("POST", f"{files}/decompress", json={"path": "/new.tar.gz"})
    assert (volume / "fresh.txt").read_bytes() == b"fresh\n"

    assert (volume / "server.properties").read_bytes() == ORIGINAL
    assert (volume / "plugin.jar").read_bytes() == b"new\n"
    assert [p.name for p in volume.iterdir() if p.name.startswith(".stellar-write-")] == []

    # The owner replaces it; anyone may ask an upload never to replace (overwrite=false).
    await owner.json("PUT", f"{files}/upload?path=/server.properties&size=4", data=b"new\n")
    kept = await owner.json(
        "PUT",
        f"{files}/upload?path=/server.properties&size=6&overwrite=false",
        status=409,
        data=b"other\n",
    )
    assert kept["error"]["message"] == "/server.properties exists already"
    assert (volume / "server.properties").read_bytes() == b"new\n"
    await owner.json("POST", f"{files}/decompress", json={"path": "/over.tar.gz"})
    assert (volume / "server.properties").read_bytes() == b"pwned\n"


async def test_only_who_may_create_files_can_save_a_new_one(stack: Stack) -> None:
    """The other way round: a sub-user allowed only to change files saved a new script or
    plugin in the editor (ours and Pterodactyl's ``files/write``). Now saving changes what is
    there, and a name that is not there yet is a 404 that says why, nothing written."""
    server_id, owner, helper, subuser_id = await owned_with_helper(
        stack, ["files.read", "files.write"]
    )
    files = f"/api/v1/servers/{server_id}/files"
    volume = stack.volume(server_id)

    await helper.json("PUT", f"{files}/contents?path=/server.properties", data=b"motd=edited\n")
    assert (volume / "server.properties").read_bytes() == b"motd=edited\n"
    refused = await helper.json("PUT", f"{files}/contents?path=/start.sh", status=404, data=b"x")
    assert refused["error"]["message"] == (
        "/start.sh does not exist: creating a file needs the 'files.create' permission"
    )
    bot = await pterodactyl_key(stack.panel, helper, "client")
    identifier = (await bot.json("GET", "/api/client"))["data"][0]["attributes"]["identifier"]
    write = f"/api/client/servers/{identifier}/files/write"
    await bot.json("POST", f"{write}?file=/server.properties", status=204, data=b"motd=bot\n")
    assert (volume / "server.properties").read_bytes() == b"motd=bot\n"
    await bot.json("POST", f"{write}?file=/plugins/evil.jar", status=404, data=b"x")
    assert sorted(p.name for p in volume.iterdir()) == ["server.properties"]

    # With files.create as well, saving makes the file.
    await owner.json(
        "PATCH",
        f"/api/v1/servers/{server_id}/users/{subuser_id}",
        json={"permissions": ["files.read", "files.write", "files.create"]},
    )
    await helper.json("PUT", f"{files}/contents?path=/start.sh", data=b"echo hi\n")
    assert (volume / "start.sh").read_bytes() == b"echo hi\n"
