"""Compress and decompress through a real agent: hostile archives are refused whole.

The module's agent allows 64 MiB extracted, 1000 entries and a 50x compression ratio
(``files_client.FILE_LIMITS``). Hostile archives are built here and written into the volume
by the test, as a user would upload them.
"""

from __future__ import annotations

import asyncio
import bz2
import io
import os
import struct
import tarfile
import uuid
import zipfile
import zlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.integration.node_agent.files_client import (
    FilesClient,
    in_game,
)
from tests.integration.node_agent.live_agent import LiveAgent, LiveServers

pytestmark = [pytest.mark.docker, pytest.mark.timeout(120)]


def tar_gz(*members: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as archive:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            archive.addfile(info, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


def member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    return info


def zipped(entries: dict[str, bytes], *, symlink: str | None = None) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
        if symlink is not None:
            info = zipfile.ZipInfo("link")
            info.external_attr = (0o120777 & 0xFFFF) << 16
            archive.writestr(info, symlink)
    return out.getvalue()


def volume_files(volume: Path) -> set[str]:
    return {str(p.relative_to(volume)) for p in volume.rglob("*")}


async def refused(api: FilesClient, server_id: uuid.UUID, archive: bytes, name: str) -> str:
    assert (await api.upload(server_id, f"/{name}", len(archive), _one(archive))).status == 200
    answer = await api.post(server_id, "decompress", {"path": f"/{name}", "directory": "/out"})
    assert answer.status == 400, answer
    assert answer.body["error"]["code"] == "archive_refused"
    message: str = answer.body["error"]["message"]
    return message


async def test_hostile_archive_entries_are_refused_and_nothing_is_written(
    servers: LiveServers, api: FilesClient, tmp_path: Path
) -> None:
    server_id = await servers.create()
    volume = servers.agent.data_dir / "volumes" / str(server_id)
    assert (await api.post(server_id, "directory", {"path": "/out"})).status == 201
    outside = tmp_path / "outside"
    hostile = {
        "dotdot.tar.gz": tar_gz((member("ok.txt"), b"fine"), (member("../../escaped"), b"x")),
        "absolute.tar.gz": tar_gz((member("ok.txt"), b"fine"), (member(f"{outside}"), b"x")),
        "symlink.tar.gz": tar_gz(
            (member("ok.txt"), b"fine"), (member("l", tarfile.SYMTYPE, str(tmp_path)), None)
        ),
        "hardlink.tar.gz": tar_gz(
            (member("ok.txt"), b"fine"), (member("h", tarfile.LNKTYPE, "/etc/passwd"), None)
        ),
        "fifo.tar.gz": tar_gz((member("p", tarfile.FIFOTYPE), None)),
        "dotdot.zip": zipped({"ok.txt": b"fine", "../escaped": b"x"}),
        "absolute.zip": zipped({"ok.txt": b"fine", f"{outside}": b"x"}),
        "symlink.zip": zipped({"ok.txt": b"fine"}, symlink=str(tmp_path)),
    }
    reasons = {name: await refused(api, server_id, data, name) for name, data in hostile.items()}

    assert "climbs out" in reasons["dotdot.tar.gz"]
    assert "climbs out" in reasons["dotdot.zip"]
    assert "absolute" in reasons["absolute.tar.gz"]
    assert "absolute" in reasons["absolute.zip"]
    assert "link entry" in reasons["symlink.tar.gz"]
    assert "link entry" in reasons["symlink.zip"]
    assert "link entry" in reasons["hardlink.tar.gz"]
    assert "special file" in reasons["fifo.tar.gz"]
    assert volume_files(volume / "out") == set()
    assert not outside.exists()


async def test_zero_bomb_is_refused_by_the_ratio_limit(
    servers: LiveServers, api: FilesClient
) -> None:
    server_id = await servers.create()
    bomb = tar_gz((member("zeros.bin"), bytes(10 * 1024 * 1024)))
    assert len(bomb) < 64 * 1024

    message = await refused(api, server_id, bomb, "bomb.tar.gz")

    assert "50 times" in message
    assert not (servers.agent.data_dir / "volumes" / str(server_id) / "out").exists()


async def test_entry_count_bomb_is_refused(servers: LiveServers, api: FilesClient) -> None:
    server_id = await servers.create()
    many = zipped({f"f{i}": b"" for i in range(2000)})

    assert "over 1000 entries" in await refused(api, server_id, many, "many.zip")


async def test_archive_past_the_total_size_limit_is_refused(
    servers: LiveServers, api: FilesClient
) -> None:
    server_id = await servers.create()
    big = tar_gz((member("noise.bin"), os.urandom(65 * 1024 * 1024)))

    response = await api.upload(server_id, "/big.tar.gz", len(big), _one(big))
    assert response.status == 200, response
    answer = await api.post(server_id, "decompress", {"path": "/big.tar.gz"})

    assert answer.status == 400, answer
    assert "expands past" in answer.body["error"]["message"]


async def test_compress_then_decompress_round_trips_and_leaves_links_out(
    servers: LiveServers, api: FilesClient, tmp_path: Path
) -> None:
    server_id = await servers.started()
    in_game(
        server_id,
        "cd /home/container && mkdir -p world/region && echo level > world/level.dat"
        " && echo r > world/region/r.0.mca && chmod +x world/level.dat"
        f" && ln -s {tmp_path} world/outside",
    )
    volume = servers.agent.data_dir / "volumes" / str(server_id)

    for archive_format in ("tar.gz", "zip"):
        made = await api.post(
            server_id,
            "compress",
            {"paths": ["world"], "format": archive_format, "name": f"w.{archive_format}"},
        )
        assert made.status == 201, made
        assert (await api.post(server_id, "directory", {"path": f"/x-{archive_format}"})).status
        answer = await api.post(
            server_id,
            "decompress",
            {"path": f"/w.{archive_format}", "directory": f"/x-{archive_format}"},
        )
        assert answer.status == 200, answer
        assert answer.body["files"] == 2
        root = volume / f"x-{archive_format}" / "world"
        assert (root / "level.dat").read_text() == "level\n"
        assert (root / "region" / "r.0.mca").read_text() == "r\n"
        assert not (root / "outside").exists()
        assert (root / "level.dat").stat().st_mode & 0o100
        assert (root / "level.dat").stat().st_uid == 1000


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


MIB = 1024 * 1024


def zeros(mib: int) -> Iterator[bytes]:
    block = bytes(MIB)
    for _ in range(mib):
        yield block


def gzipped(*parts: bytes | Iterator[bytes]) -> bytes:
    """The gzip of the parts (byte strings, or streams of them: gigabytes of zeros)."""
    packer = zlib.compressobj(1, zlib.DEFLATED, 31)
    out = []
    for part in parts:
        for chunk in [part] if isinstance(part, bytes) else part:
            out.append(packer.compress(chunk))
    return b"".join(out) + packer.flush()


def tar_header(name: str, kind: bytes, size: int) -> bytes:
    """One tar header block announcing ``size`` bytes of data (which the caller adds)."""
    info = tarfile.TarInfo(name)
    info.type, info.size = kind, size
    return info.tobuf(tarfile.USTAR_FORMAT)


def lying_zip(name: bytes, method: int, declared: int, data: bytes) -> bytes:
    """A one-entry zip whose headers say it holds ``declared`` bytes, whatever ``data``
    expands to."""
    crc = zlib.crc32(bytes(declared))
    local = (
        struct.pack(
            "<4sHHHHHIIIHH",
            b"PK\x03\x04",
            46,
            0,
            method,
            0,
            0,
            crc,
            len(data),
            declared,
            len(name),
            0,
        )
        + name
    )
    central = (
        struct.pack(
            "<4sHHHHHHIIIHHHHHII",
            b"PK\x01\x02",
            0x031E,
            46,
            0,
            method,
            0,
            0,
            crc,
            len(data),
            declared,
            len(name),
            0,
            0,
            0,
            0,
            0o100644 << 16,
            0,
        )
        + name
    )
    end = struct.pack(
        "<4sHHHHIIH", b"PK\x05\x06", 0, 0, 1, 1, len(central), len(local) + len(data), 0
    )
    return local + data + central + end  # fmt: skip


async def test_archives_that_cost_memory_or_cpu_before_any_check_are_refused_cheaply(
    servers: LiveServers, api: FilesClient, live_agent: LiveAgent
) -> None:
    """Each of these passed the checks, or was refused only after the agent had spent what
    it hides: a 10-byte zip entry that bzip2 expands to 512 MiB in one read; a GNU long-name
    record of 512 MiB and a pax record of 60,000 digits (read whole while listing; the
    digits' parse holds the interpreter lock for seconds on Pythons without the fix for
    CVE-2024-6232); an entry declaring 1 GiB, decompressed whole to reach the next header
    before the size limit was looked at."""
    server_id = await servers.create()
    assert (await api.post(server_id, "directory", {"path": "/out"})).status == 201
    packer = bz2.BZ2Compressor(9)
    hidden = b"".join(packer.compress(block) for block in zeros(512)) + packer.flush()
    bombs = {
        "bzip2.zip": lying_zip(b"small.txt", zipfile.ZIP_BZIP2, 10, hidden),
        "long-name.tar.gz": gzipped(
            tar_header("././@LongLink", tarfile.GNUTYPE_LONGNAME, 512 * MIB), zeros(512)
        ),
        "pax.tar.gz": gzipped(
            tar_header("PaxHeader", tarfile.XHDTYPE, 60_000), b"9" * 60_000, bytes(4 * 512)
        ),
        "huge-entry.tar.gz": gzipped(
            tar_header("zeros.bin", tarfile.REGTYPE, 1024 * MIB), zeros(1024), bytes(1024)
        ),
    }

    reasons, spent = {}, {}
    for name, bomb in bombs.items():
        cpu = live_agent.cpu_seconds()
        reasons[name] = await refused(api, server_id, bomb, name)
        spent[name] = live_agent.cpu_seconds() - cpu

    assert "stored or deflate only" in reasons["bzip2.zip"]
    assert "extended header of 536870912 bytes" in reasons["long-name.tar.gz"]
    assert "extended header of 60000 bytes" in reasons["pax.tar.gz"]
    assert "expands past" in reasons["huge-entry.tar.gz"]
    # Each refusal costs the agent ~0.01 s of CPU. Without the checks (this machine): the
    # zip 1.4 s and 512 MiB, the long name 0.5 s and 512 MiB, the digits 3.5 s with the
    # interpreter held, the entry 0.7 s.
    assert all(seconds < 0.3 for seconds in spent.values()), spent
    assert live_agent.peak_rss_kib() < 300 * 1024


async def test_one_archive_job_at_a_time_per_server(servers: LiveServers, api: FilesClient) -> None:
    """Each extraction or compression holds one of the agent's few worker threads for as
    long as it takes: a user sending many at once held them all, and every server's file
    operations waited. One at a time per server; the next is told to wait (429)."""
    server_id = await servers.create()
    noise = tar_gz((member("noise.bin"), os.urandom(24 * MIB)))
    assert (await api.upload(server_id, "/noise.tar.gz", len(noise), _one(noise))).status == 200
    for directory in ("/a", "/b"):
        assert (await api.post(server_id, "directory", {"path": directory})).status == 201

    answers = await asyncio.gather(
        *(
            api.post(server_id, "decompress", {"path": "/noise.tar.gz", "directory": directory})
            for directory in ("/a", "/b")
        )
    )

    assert sorted(answer.status for answer in answers) == [200, 429], answers
    refused = next(answer for answer in answers if answer.status == 429)
    assert "already runs 1 archive jobs" in refused.body["error"]["message"]
    # The slot is given back: the next one runs.
    again = await api.post(server_id, "decompress", {"path": "/noise.tar.gz", "directory": "/b"})
    assert again.status == 200, again


def pax_records(count: int, prefix: str) -> bytes:
    """``count`` pax records ``<len> <prefix><n>=\\n``, each a key of its own."""
    records = []
    for number in range(count):
        body = f" {prefix}{number}=\n"
        length = len(body) + 1
        while len(str(length)) + len(body) != length:
            length += 1
        records.append(f"{length}{body}".encode())
    return b"".join(records)


def padded(data: bytes) -> bytes:
    return data + bytes(-len(data) % 512)


@pytest.mark.own_agent
async def test_pax_keys_in_every_header_do_not_pile_up_in_the_agents_memory(
    servers: LiveServers, api: FilesClient, live_agent: LiveAgent
) -> None:
    """tarfile keeps each member's pax records as a dict, and a global header's records are
    copied into every later member's: a 15 KiB header of ~1,800 empty keys cost ~160 KiB of
    Python objects per member, kept for the whole archive. A 1000-entry tar.gz of 250 KiB
    (directories only, no size to count against the ratio) held ~200 MiB of the agent, and
    the default 100,000 entries ~16 GiB; global headers, read into every member, cost the
    same without a single local header. Now a member's records are dropped once read, and
    global headers past a budget refuse the archive. A run of thousands of empty extended
    headers (one recursion level each in tarfile) was a 500; it is refused too."""
    server_id = await servers.create()
    assert (await api.post(server_id, "directory", {"path": "/out"})).status == 201
    local = padded(pax_records(1800, "k"))
    members = b"".join(
        tar_header("PaxHeader", tarfile.XHDTYPE, len(local))
        + local
        + tar_header(f"d{number}/", tarfile.DIRTYPE, 0)
        for number in range(990)
    )
    per_member = gzipped(members, bytes(1024))
    global_records = [padded(pax_records(1300, f"g{index}-")) for index in range(4)]
    globals_first = gzipped(
        *(tar_header("GlobalHead", tarfile.XGLTYPE, len(r)) + r for r in global_records),
        b"".join(tar_header(f"e{number}/", tarfile.DIRTYPE, 0) for number in range(990)),
        bytes(1024),
    )
    before = live_agent.peak_rss_kib()

    name = "pax-per-member.tar.gz"
    uploaded = await api.upload(server_id, f"/{name}", len(per_member), _one(per_member))
    assert uploaded.status == 200
    answer = await api.post(server_id, "decompress", {"path": f"/{name}", "directory": "/out"})
    assert answer.status == 200, answer
    assert answer.body["directories"] == 990
    reason = await refused(api, server_id, globals_first, "pax-global.tar.gz")
    # tarfile reads a run of extended headers one recursion level each: 3000 was a 500.
    run = gzipped(
        b"".join(tar_header("PaxHeader", tarfile.XHDTYPE, 0) for _ in range(3000)),
        tar_header("f/", tarfile.DIRTYPE, 0),
        bytes(1024),
    )
    run_reason = await refused(api, server_id, run, "pax-run.tar.gz")

    assert "global pax headers hold over 16384 bytes" in reason
    assert "run of extended headers" in run_reason
    grown = (live_agent.peak_rss_kib() - before) // 1024
    assert grown < 40, f"the agent grew by {grown} MiB"


def zip_of_many_entries(count: int) -> bytes:
    """A zip64 whose central directory lists ``count`` empty files, all pointing at the same
    one local header (~50 bytes an entry, whatever the entry limit)."""
    local = struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, 0, 0, 0, 0, 0, 0, 1, 0) + b"a"
    central = b"".join(
        struct.pack(
            "<4sHHHHHHIIIHHHHHII",
            *(b"PK\x01\x02", 0x031E, 20, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0o100644 << 16, 0),
        )
        + b"%07d" % number
        for number in range(count)
    )
    at = len(local)
    end64 = struct.pack(
        "<4sQHHIIQQQQ", b"PK\x06\x06", 44, 45, 45, 0, 0, count, count, len(central), at
    )
    locator = struct.pack("<4sIQI", b"PK\x06\x07", 0, at + len(central), 1)
    end = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    return local + central + end64 + locator + end


@pytest.mark.own_agent
async def test_zip_entry_count_is_checked_before_its_directory_is_parsed(
    servers: LiveServers, api: FilesClient, live_agent: LiveAgent
) -> None:
    """zipfile parses a zip's whole central directory, an object per entry, when it opens
    it; the entry limit was checked only after. 500,000 entries (a 26 MB upload) cost the
    agent ~5 s of CPU and ~200 MiB before the refusal, and a 1 GB zip ~8 GiB and minutes.
    The directory's records are now counted first, and parsing stops past the limit."""
    server_id = await servers.create()
    assert (await api.post(server_id, "directory", {"path": "/out"})).status == 201
    bomb = zip_of_many_entries(500_000)
    before, cpu = live_agent.peak_rss_kib(), live_agent.cpu_seconds()

    reason = await refused(api, server_id, bomb, "many.zip")

    spent = live_agent.cpu_seconds() - cpu
    grown = (live_agent.peak_rss_kib() - before) // 1024
    assert "over 1000 entries" in reason
    assert spent < 1.0, spent  # the upload itself included
    assert grown < 40, f"the agent grew by {grown} MiB"
