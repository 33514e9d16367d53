"""Uploads and downloads stream: size limits bite before the body is read, a bad body
leaves the old file in place, and a 2 GiB file goes through with flat agent memory.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.integration.node_agent.files_client import (
    FilesClient,
    files_path,
)
from tests.integration.node_agent.live_agent import LiveAgent, LiveServers

pytestmark = [pytest.mark.docker, pytest.mark.timeout(180)]
MIB = 1024 * 1024
TWO_GIB = 2 * 1024 * MIB


async def chunks(total: int, chunk: int = MIB, fill: bytes = b"\x5a") -> AsyncIterator[bytes]:
    block = fill * chunk
    left = total
    while left > 0:
        yield block[: min(chunk, left)]
        left -= min(chunk, left)


async def status_of_bodiless_request(agent: LiveAgent, head: str) -> tuple[int, float]:
    """Send only the request head (no body byte) and time the answer."""
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", agent.port)
    writer.write(head.encode("ascii"))
    await writer.drain()
    status_line = await asyncio.wait_for(reader.readline(), 5)
    writer.close()
    return int(status_line.split()[1]), time.monotonic() - started


async def test_upload_over_the_limit_is_refused_before_the_body_is_read(
    servers: LiveServers, api: FilesClient, live_agent: LiveAgent
) -> None:
    server_id = await servers.create()
    size = 4 * 1024**3  # the module's agent allows 3 GiB
    path = files_path(server_id, "upload", path="/huge.bin", size=size)
    token = api.sign(server_id, "files.upload", "PUT", path, b"")
    head = (
        f"PUT {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Length: {size}\r\n\r\n"
    )

    status, seconds = await status_of_bodiless_request(live_agent, head)

    assert status == 413
    assert seconds < 2
    assert not (live_agent.volume(server_id) / "huge.bin").exists()


async def test_upload_whose_size_differs_from_the_signed_one_is_refused(
    servers: LiveServers, api: FilesClient
) -> None:
    server_id = await servers.create()
    signed = files_path(server_id, "upload", path="/a.bin", size=10)
    token = api.sign(server_id, "files.upload", "PUT", signed, b"")
    other = files_path(server_id, "upload", path="/a.bin", size=11)

    async with api.http.put(
        api.agent.base_url + other, data=b"x" * 11, headers={"Authorization": f"Bearer {token}"}
    ) as response:
        assert response.status == 401


async def test_upload_body_longer_or_shorter_than_signed_leaves_the_old_file(
    servers: LiveServers, api: FilesClient, live_agent: LiveAgent
) -> None:
    server_id = await servers.create()
    assert (await api.write_file(server_id, "/keep.txt", b"old version")).status == 200
    volume = live_agent.volume(server_id)

    longer = await api.upload(server_id, "/keep.txt", 3 * MIB, chunks(5 * MIB))
    shorter = await api.upload(server_id, "/keep.txt", 3 * MIB, chunks(2 * MIB))

    assert longer.status == 413, longer
    assert shorter.status == 400, shorter
    assert (volume / "keep.txt").read_bytes() == b"old version"
    assert sorted(os.listdir(volume)) == ["keep.txt"]


async def test_ordinary_upload_then_download_returns_the_same_bytes(
    servers: LiveServers, api: FilesClient
) -> None:
    server_id = await servers.create()
    data = os.urandom(3 * MIB + 17)

    async def once() -> AsyncIterator[bytes]:
        yield data

    uploaded = await api.upload(server_id, "/blob.bin", len(data), once())
    downloaded = await api.read_file(server_id, "/blob.bin")

    assert uploaded.status == 200, uploaded
    assert uploaded.body["size"] == len(data)
    assert downloaded.body == data


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_two_gib_upload_and_download_stream_with_flat_agent_memory(
    servers: LiveServers, api: FilesClient, live_agent: LiveAgent
) -> None:
    server_id: uuid.UUID = await servers.create(disk_mib=8192)
    volume = live_agent.volume(server_id)
    with (volume / "sparse.bin").open("wb") as sparse:
        sparse.truncate(TWO_GIB)
    before = live_agent.peak_rss_kib()
    timeout = aiohttp.ClientTimeout(total=200)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        started = time.monotonic()
        uploaded = await api.upload(server_id, "/big.bin", TWO_GIB, chunks(TWO_GIB), session)
        upload_seconds = time.monotonic() - started

        started = time.monotonic()
        path = files_path(server_id, "contents", path="/sparse.bin")
        token = api.sign(server_id, "files.read", "GET", path, b"")
        received = 0
        async with session.get(
            live_agent.base_url + path, headers={"Authorization": f"Bearer {token}"}
        ) as response:
            assert response.status == 200
            assert response.content_length == TWO_GIB
            async for piece in response.content.iter_chunked(4 * MIB):
                received += len(piece)
        download_seconds = time.monotonic() - started
    growth_mib = (live_agent.peak_rss_kib() - before) / 1024

    print(
        f"2 GiB upload {upload_seconds:.1f} s, download {download_seconds:.1f} s, "
        f"agent peak RSS growth {growth_mib:.1f} MiB"
    )
    assert uploaded.status == 200, uploaded
    assert (volume / "big.bin").stat().st_size == TWO_GIB
    assert received == TWO_GIB
    assert growth_mib < 100
    os.unlink(volume / "big.bin")
