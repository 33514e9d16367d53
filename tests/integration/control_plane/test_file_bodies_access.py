"""A file body that takes its time to arrive is no way around losing access. A sub-user
started an upload (or a save), was removed (or lost the permission, or their session ended)
while the body was still arriving, sent the rest, and the file was written: authorization
was decided once, at the start. Now the caller's credential and access are read again while
the body arrives (every 5 s, as an SFTP session's) and before its last chunk reaches the node:
the request is refused and nothing is written. Ours (upload, save) and Pterodactyl's signed
upload; against a real agent and volume."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

import aiohttp
import pytest

from tests.integration.control_plane.stack import Stack
from tests.integration.control_plane.test_compat_files_end_to_end import link_of
from tests.integration.control_plane.test_file_bodies import pieces, temporary_files
from tests.integration.control_plane.test_file_replace_permission import ORIGINAL, owned_with_helper
from tests.support.compat import pterodactyl_key
from tests.support.panel import Browser

pytestmark = [
    pytest.mark.docker,
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
]
PERMISSIONS = ["files.read", "files.create", "files.write"]
FIRST, REST = b"a" * 40_000, b"b" * 40_000
PAUSE = 3.0  # between them: long enough to revoke in
Response = aiohttp.ClientResponse
Revoke = Callable[[Stack, Browser, Browser, str, str], Awaitable[None]]


async def removed(
    stack: Stack, owner: Browser, helper: Browser, server_id: str, subuser: str
) -> None:
    await owner.json("DELETE", f"/api/v1/servers/{server_id}/users/{subuser}", status=204)


def narrowed_to(*permissions: str) -> Revoke:
    """The owner leaves the sub-user only ``permissions``."""

    async def narrow(
        stack: Stack, owner: Browser, helper: Browser, server_id: str, subuser: str
    ) -> None:
        await owner.json(
            "PATCH",
            f"/api/v1/servers/{server_id}/users/{subuser}",
            json={"permissions": list(permissions)},
        )

    return narrow


read_only = narrowed_to("files.read")


async def signed_out(
    stack: Stack, owner: Browser, helper: Browser, server_id: str, subuser: str
) -> None:
    # Another request on the same session ends it (as signing out in another tab does).
    await helper.json("POST", "/api/v1/auth/logout", status=204)


async def keys_revoked(
    stack: Stack, owner: Browser, helper: Browser, server_id: str, subuser: str
) -> None:
    for key in (await helper.json("GET", "/api/v1/account/api-keys"))["data"]:
        await helper.json("DELETE", f"/api/v1/account/api-keys/{key['id']}", status=204)


async def suspended(
    stack: Stack, owner: Browser, helper: Browser, server_id: str, subuser: str
) -> None:
    await stack.admin.json("POST", f"/api/v1/servers/{server_id}/suspend")


REVOCATIONS = pytest.mark.parametrize(
    ("revoke", "status"),
    [
        pytest.param(removed, 404, id="removed"),
        pytest.param(read_only, 403, id="permission-taken"),
        pytest.param(signed_out, 401, id="signed-out"),
        pytest.param(suspended, 409, id="suspended"),
    ],
)


Send = Callable[[Browser, str, AsyncIterator[bytes]], Coroutine[Any, Any, aiohttp.ClientResponse]]


async def revoked_meanwhile(
    stack: Stack, revoke: Revoke, send: Send, *parts: bytes | float
) -> tuple[aiohttp.ClientResponse, str]:
    """``send`` makes the helper's request with a body of ``parts`` (``pieces``); once its
    first part is on its way, ``revoke``. The answer, and the server."""
    server_id, owner, helper, subuser = await owned_with_helper(stack, PERMISSIONS)
    files = f"/api/v1/servers/{server_id}/files"
    first_sent = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        async for piece in pieces(*parts):
            yield piece
            first_sent.set()

    request = asyncio.create_task(send(helper, files, body()))
    async with asyncio.timeout(30):
        await first_sent.wait()
    await revoke(stack, owner, helper, server_id, subuser)
    return await request, server_id


def nothing_written(stack: Stack, server_id: str) -> None:
    volume = stack.volume(server_id)
    assert not (volume / "new.dat").exists()
    deadline = time.monotonic() + 10
    while list(temporary_files(volume)):
        assert time.monotonic() < deadline, list(temporary_files(volume))
        time.sleep(0.1)


@REVOCATIONS
@pytest.mark.parametrize("route", ["upload", "contents"])
async def test_access_lost_while_the_body_arrives_refuses_it_and_writes_nothing(
    stack: Stack, route: str, revoke: Revoke, status: int
) -> None:
    size = len(FIRST) + len(REST)
    query = "path=/new.dat" + (f"&size={size}" if route == "upload" else "")

    async def send(helper: Browser, files: str, body: AsyncIterator[bytes]) -> Response:
        return await helper.request("PUT", f"{files}/{route}?{query}", data=body)

    answer, server_id = await revoked_meanwhile(stack, revoke, send, FIRST, PAUSE, REST)
    assert answer.status == status, await answer.text()
    nothing_written(stack, server_id)


async def test_a_body_still_arriving_long_after_access_was_lost_is_cut_within_seconds(
    stack: Stack,
) -> None:
    """Not only at its end: a 30 s upload is cut within the 5 s re-check."""
    size = 50 * 40_000

    async def send(helper: Browser, files: str, body: AsyncIterator[bytes]) -> Response:
        return await helper.request("PUT", f"{files}/upload?path=/new.dat&size={size}", data=body)

    started = time.monotonic()
    parts: list[bytes | float] = [FIRST, 0.6] * 50
    answer, server_id = await revoked_meanwhile(stack, removed, send, *parts)
    assert answer.status == 404, await answer.text()
    assert time.monotonic() - started < 12
    nothing_written(stack, server_id)


@pytest.mark.parametrize(
    ("revoke", "status"),
    [
        pytest.param(removed, 404, id="removed"),
        pytest.param(read_only, 403, id="permission-taken"),
        pytest.param(keys_revoked, 401, id="key-revoked"),
        pytest.param(suspended, 409, id="suspended"),
    ],
)
async def test_pterodactyls_signed_upload_is_refused_when_access_went_while_it_arrived(
    stack: Stack, revoke: Revoke, status: int
) -> None:
    """The link was good when redeemed; the part arrives slowly, and the caller it stands for
    lost access meanwhile, or the client key it was made with was revoked (401)."""

    async def send(helper: Browser, files: str, body: AsyncIterator[bytes]) -> Response:
        bot = await pterodactyl_key(stack.panel, helper, "client")
        identifier = (await bot.json("GET", "/api/client"))["data"][0]["attributes"]["identifier"]
        link = link_of(await bot.json("GET", f"/api/client/servers/{identifier}/files/upload"))
        form = aiohttp.MultipartWriter("form-data")
        part = form.append(body)
        part.set_content_disposition("form-data", name="files", filename="new.dat")
        anonymous = await stack.panel.browser()
        return await anonymous.request("POST", link + "&directory=/", data=form)

    answer, server_id = await revoked_meanwhile(stack, revoke, send, FIRST, PAUSE, REST)
    assert answer.status == status, await answer.text()
    nothing_written(stack, server_id)


@pytest.mark.parametrize("via", ["ours", "signed"])
async def test_a_download_under_way_when_access_is_lost_is_cut_within_seconds(
    stack: Stack, via: str
) -> None:
    """As an SFTP session's: the caller's access is read again every 5 s while the file goes
    out, and the transfer ends short (the client sees it cut, never a whole-looking file)."""
    server_id, owner, helper, subuser = await owned_with_helper(stack, PERMISSIONS)
    files = f"/api/v1/servers/{server_id}/files"
    size = 48 * 1024 * 1024
    await owner.json(
        "PUT", f"{files}/upload?path=/big.dat&size={size}", data=io.BytesIO(b"w" * size)
    )
    if via == "ours":
        downloader, path = helper, f"{files}/contents?path=/big.dat"
    else:
        bot = await pterodactyl_key(stack.panel, helper, "client")
        identifier = (await bot.json("GET", "/api/client"))["data"][0]["attributes"]["identifier"]
        path = link_of(
            await bot.json("GET", f"/api/client/servers/{identifier}/files/download?file=/big.dat")
        )
        downloader = await stack.panel.browser()

    got: list[int] = []

    async def read_slowly(response: Response) -> None:
        while chunk := await response.content.read(256 * 1024):
            got.append(len(chunk))
            if len(got) == 1:
                await removed(stack, owner, helper, server_id, subuser)
            await asyncio.sleep(0.1)  # ~2.5 MB/s: the whole file would take 20 s

    started = time.monotonic()
    response = await downloader.request("GET", path)
    assert response.status == 200, await response.text()
    with pytest.raises(aiohttp.ClientPayloadError):
        await read_slowly(response)
    assert sum(got) < size
    assert time.monotonic() - started < 15


async def test_an_upload_over_a_file_needs_files_write_still_when_its_body_ends(
    stack: Stack,
) -> None:
    """Replacing a file is changing it: a sub-user who lost ``files.write`` (kept
    ``files.create``) while the replacement arrived does not replace it."""

    async def send(helper: Browser, files: str, body: AsyncIterator[bytes]) -> Response:
        size = len(FIRST) + len(REST)
        path = f"{files}/upload?path=/server.properties&size={size}"
        return await helper.request("PUT", path, data=body)

    create_only = narrowed_to("files.read", "files.create")
    answer, server_id = await revoked_meanwhile(stack, create_only, send, FIRST, PAUSE, REST)
    assert answer.status == 403, await answer.text()
    assert "files.write" in (await answer.json())["error"]["message"]
    assert (stack.volume(server_id) / "server.properties").read_bytes() == ORIGINAL
