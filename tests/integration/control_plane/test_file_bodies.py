"""Raw file bodies from a client, through the control plane, to a real agent.

An upload longer than its declared size is refused with 413, a shorter one with 400; either
way the file on the node stays as it was and no temporary file is left behind. (The database
plays no part: SQLite only.)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from node_agent.files.writes import TEMP_NAME
from tests.integration.control_plane.stack import Stack
from tests.support.panel import Browser

pytestmark = [
    pytest.mark.docker,
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
]
ORIGINAL = b"the original world\n"


async def world(stack: Stack) -> tuple[Browser, str, Path]:
    """A server holding /world.dat: its owner, its files URL and its volume."""
    server_id, owner = await stack.owned_server("builder@example.org")
    files = f"/api/v1/servers/{server_id}/files"
    await owner.json("PUT", f"{files}/contents?path=/world.dat", data=ORIGINAL)
    return owner, files, stack.volume(server_id)


async def pieces(*parts: bytes | float) -> AsyncIterator[bytes]:
    """A chunked body: each bytes item is sent, each number is a pause of that many seconds."""
    for part in parts:
        if isinstance(part, bytes):
            yield part
        else:
            await asyncio.sleep(part)


def temporary_files(volume: Path) -> Iterator[Path]:
    return (p for p in volume.rglob("*") if TEMP_NAME.fullmatch(p.name))


async def assert_untouched(owner: Browser, files: str, volume: Path) -> None:
    """/world.dat still holds ORIGINAL, and the node dropped its temporary file."""
    response = await owner.request("GET", f"{files}/contents?path=/world.dat")
    assert response.status == 200
    assert await response.read() == ORIGINAL
    deadline = time.monotonic() + 10
    while list(temporary_files(volume)):
        assert time.monotonic() < deadline, list(temporary_files(volume))
        await asyncio.sleep(0.1)


@pytest.mark.parametrize(
    "parts",
    [
        pytest.param((b"a" * 600, 0.2, b"b" * 400, 0.2, b"c" * 500), id="beyond-after-exact"),
        pytest.param((b"a" * 1500,), id="one-piece"),
    ],
)
async def test_an_upload_longer_than_its_size_is_refused_with_413_and_the_file_kept(
    stack: Stack, parts: tuple[bytes | float, ...]
) -> None:
    owner, files, volume = await world(stack)
    answer = await owner.json(
        "PUT",
        f"{files}/upload?path=/world.dat&size=1000",
        status=413,
        data=pieces(*parts),
    )
    assert answer["error"] == {
        "code": "payload_too_large",
        "message": "the upload is larger than its announced size (1000 bytes)",
        "details": [],
    }
    await assert_untouched(owner, files, volume)


async def test_an_upload_shorter_than_its_size_is_refused_and_the_file_kept(stack: Stack) -> None:
    owner, files, volume = await world(stack)
    answer = await owner.json(
        "PUT", f"{files}/upload?path=/world.dat&size=1000", status=400, data=pieces(b"a" * 999)
    )
    assert answer["error"]["message"] == "the body had 999 bytes, not the declared 1000"
    await assert_untouched(owner, files, volume)
