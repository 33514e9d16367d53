"""Pull from URL (through the SSRF guard, into the volume) and a disk that fills mid-write."""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from ipaddress import ip_network
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from node_agent.files.denylist import DenyList
from node_agent.files.errors import InsufficientStorage, TooManyAtOnce
from node_agent.files.limits import FileLimits
from node_agent.files.pull import ServerSlots, sanitise_name
from node_agent.files.service import FileService, ServerFiles
from node_agent.storage.volume import DiskUsage
from shared.files_api import PullFile
from shared.outbound import OutboundClient
from shared.ssrf import OutboundBodyTooLarge, UnsafeURL

OWNER = (os.getuid(), os.getgid())
SERVER = uuid.uuid4()


class RoomyVolume:
    """A stand-in volume with plenty of space left."""

    def __init__(self, path: Path) -> None:
        self.path = path

    async def usage(self) -> DiskUsage:
        return DiskUsage(used_bytes=0, total_bytes=10 * 1024**3)


def files_in(path: Path, limits: FileLimits | None = None) -> ServerFiles:
    return ServerFiles(path, DenyList([]), limits or FileLimits(), OWNER, RoomyVolume(path))  # type: ignore[arg-type]


async def local_names(host: str) -> Sequence[str]:
    return ["127.0.0.1"]


@pytest.fixture
async def origin() -> AsyncIterator[TestServer]:
    """A web server standing in for a public download site."""

    async def named(request: web.Request) -> web.Response:
        return web.Response(
            body=b"jar bytes",
            headers={"Content-Disposition": 'attachment; filename="../../etc/cron.d/evil.jar"'},
        )

    async def huge(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        for _ in range(64):
            await response.write(b"\0" * 65536)
        return response

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(0.5)
        return web.Response(body=b"slow")

    app = web.Application()
    app.router.add_get("/dl/named", named)
    app.router.add_get("/dl/plugin v2.jar", slow)
    app.router.add_get("/huge", huge)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield server
    await server.close()


@pytest.fixture
async def service() -> AsyncIterator[FileService]:
    limits = FileLimits(max_pull_bytes=1024 * 1024, pulls_per_server=2)
    async with OutboundClient(
        resolver=local_names, allow_for_tests=frozenset({ip_network("127.0.0.0/8")})
    ) as outbound:
        yield FileService(limits, OWNER, outbound)


async def test_pulled_file_takes_a_sanitised_content_disposition_name(
    origin: TestServer, service: FileService, tmp_path: Path
) -> None:
    (tmp_path / "plugins").mkdir()
    order = PullFile(url=f"http://downloads.test:{origin.port}/dl/named", directory="/plugins")

    entry = await service.pull(SERVER, files_in(tmp_path), order)

    assert entry.path == "/plugins/evil.jar"
    assert (tmp_path / "plugins" / "evil.jar").read_bytes() == b"jar bytes"


async def test_pull_over_the_size_cap_fails_and_leaves_no_file(
    origin: TestServer, service: FileService, tmp_path: Path
) -> None:
    order = PullFile(url=f"http://downloads.test:{origin.port}/huge", name="big.bin")

    with pytest.raises(OutboundBodyTooLarge):
        await service.pull(SERVER, files_in(tmp_path), order)

    assert os.listdir(tmp_path) == []


async def test_pull_from_a_private_address_is_refused(service: FileService, tmp_path: Path) -> None:
    with pytest.raises(UnsafeURL):
        await service.pull(SERVER, files_in(tmp_path), PullFile(url="http://127.0.0.1:9/x"))


async def test_a_third_concurrent_pull_of_one_server_is_refused(
    origin: TestServer, service: FileService, tmp_path: Path
) -> None:
    url = f"http://downloads.test:{origin.port}/dl/plugin%20v2.jar"
    files = files_in(tmp_path)
    pulls = [service.pull(SERVER, files, PullFile(url=url, name=f"p{i}")) for i in range(2)]
    running = [asyncio.create_task(pull) for pull in pulls]
    await asyncio.sleep(0.1)

    with pytest.raises(TooManyAtOnce):
        await service.pull(SERVER, files, PullFile(url=url))
    other_server = await service.pull(uuid.uuid4(), files, PullFile(url=url))

    assert other_server.name == "plugin v2.jar"
    assert {entry.name for entry in await asyncio.gather(*running)} == {"p0", "p1"}


def test_server_slots_are_given_back() -> None:
    slots = ServerSlots(1, "pulls")
    with slots.slot(SERVER):
        pass
    with slots.slot(SERVER), pytest.raises(TooManyAtOnce), slots.slot(SERVER):
        pass


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\Windows\\evil.exe", "evil.exe"),
        ("..", None),
        ("a\x00b\nc", "abc"),
        ("", None),
        ("dir/", None),
    ],
)
def test_file_names_from_the_network_are_reduced_to_one_component(
    raw: str, expected: str | None
) -> None:
    assert sanitise_name(raw) == expected


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs (needs root to mount)."""
    mountpoint = tmp_path / "small"
    mountpoint.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mountpoint)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (not root?)")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", str(mountpoint)], check=False)


async def test_disk_full_mid_write_is_507_and_keeps_the_old_file(small_disk: Path) -> None:
    (small_disk / "world.dat").write_bytes(b"old world")

    async def four_mib() -> AsyncIterator[bytes]:
        for _ in range(4):
            yield b"\1" * (1024 * 1024)

    with pytest.raises(InsufficientStorage) as caught:
        await files_in(small_disk).write(
            "/world.dat", four_mib(), size=4 * 1024 * 1024, max_bytes=8 * 1024 * 1024
        )

    assert caught.value.status == 507
    assert (small_disk / "world.dat").read_bytes() == b"old world"
    assert os.listdir(small_disk) == ["world.dat"]
