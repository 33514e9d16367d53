"""Raw file bodies from a client, through the control plane, to a real agent.

A body that stops arriving (or only trickles) is cut with 408, one longer than its declared
size with 413; either way the file on the node stays as it was and no temporary file is left
behind. A body that keeps arriving is relayed whatever its size. (The database plays no part:
SQLite only.)
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from node_agent.files.paths import TEMP_NAME
from tests.integration.control_plane.conftest import AUTH_SECRET, UNLIMITED
from tests.integration.control_plane.stack import Stack
from tests.support.panel import Browser

pytestmark = [
    pytest.mark.docker,
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
]
BODY_TIMEOUT = 1.0
ORIGINAL = b"the original world\n"


@pytest.fixture
def stack_environment() -> dict[str, str]:
    """The control plane of ``stack`` with a body timeout of one second."""
    return {
        "STELLAR_AUTH_SECRET": AUTH_SECRET,
        "STELLAR_BCRYPT_COST": "10",
        "STELLAR_RATE_LIMITS": UNLIMITED,
        "STELLAR_BODY_TIMEOUT_SECONDS": str(BODY_TIMEOUT),
    }


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


async def trickle(piece: bytes, every: float, until: float) -> AsyncIterator[bytes]:
    """``piece`` every ``every`` seconds for ``until`` seconds: never stalls, barely moves."""
    deadline = time.monotonic() + until
    while time.monotonic() < deadline:
        yield piece
        await asyncio.sleep(every)


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
    "body",
    [
        pytest.param(lambda: pieces(b"x" * 1024, 30.0, b"x" * 1024), id="stalls"),
        pytest.param(lambda: trickle(b"x" * 100, 0.2, 30.0), id="trickles"),
    ],
)
@pytest.mark.parametrize("route", ["upload", "contents"])
async def test_a_body_that_does_not_keep_arriving_is_cut_with_408_and_the_file_kept(
    stack: Stack, route: str, body: object
) -> None:
    owner, files, volume = await world(stack)
    size = 512 * 1024
    query = "path=/world.dat" + (f"&size={size}" if route == "upload" else "")
    started = time.monotonic()
    answer = await owner.json(
        "PUT",
        f"{files}/{route}?{query}",
        status=408,
        data=body(),  # type: ignore[operator]
    )
    assert time.monotonic() - started < 10 * BODY_TIMEOUT
    assert answer["error"]["code"] == "request_timeout"
    await assert_untouched(owner, files, volume)


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


async def test_bodies_that_keep_arriving_are_relayed_whole(stack: Stack) -> None:
    owner, files, volume = await world(stack)
    payload = bytes(range(256)) * 4096 * 24  # 24 MiB, chunked, with pauses under the limit
    step = 1024 * 1024
    parts: list[bytes | float] = []
    for offset in range(0, len(payload), step):
        parts += [payload[offset : offset + step], 0 if offset % (4 * step) else BODY_TIMEOUT / 2]
    entry = await owner.json(
        "PUT",
        f"{files}/upload?path=/world.dat&size={len(payload)}",
        data=pieces(*parts),
    )
    assert entry["size"] == len(payload)
    assert (volume / "world.dat").read_bytes() == payload

    text = b"motd=" + b"m" * (1024 * 1024 - 6) + b"\n"  # the editor's 1 MiB, with a pause
    await owner.json(
        "PUT",
        f"{files}/contents?path=/server.properties",
        data=pieces(text[:1000], BODY_TIMEOUT / 2, text[1000:]),
    )
    assert (volume / "server.properties").read_bytes() == text
    with_length = await owner.json(
        "PUT",
        f"{files}/upload?path=/region.dat&size={len(payload)}",
        data=io.BytesIO(payload),
    )
    assert with_length["size"] == len(payload)
    assert list(temporary_files(volume)) == []
